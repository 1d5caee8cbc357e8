from rdsssl.cli import main

main()
