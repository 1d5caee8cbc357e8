"""Local emulator of the RDS OpenAPI; imports nothing from the client side of rdsssl."""
