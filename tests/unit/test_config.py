"""The desired-state file: the schema in the README, merging, paths and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdsssl.errors import ConfigError, ExitCode
from rdsssl.models import AclMode
from rdsssl.ops.config import load_desired_state

SPEC_EXAMPLE = """
[defaults]                      # applies to every instance unless overridden
region = "cn-hangzhou"          # optional; else --region / ALIBABA_CLOUD_REGION_ID
ca_dir = "ca"                   # a CA store: its certificate becomes ClientCACert
# ca_bundle = "bundle.pem"      # or: a PEM file of CA certificates (no CRL building then)
crl = true                      # upload a CRL built from ca_dir (ClientCrlEnabled=1)
acl = "verify-full"             # cert | prefer | verify-ca | verify-full
replication_acl = "verify-full" # optional

[[instances]]
id = "pgm-bp1example"
acl = "cert"                    # any key of [defaults] can be overridden per instance

[[instances]]
tags = { env = "prod" }         # or select instances by tags
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rdsssl.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_desired_state(write(tmp_path, text))
    message = str(caught.value)
    assert str(tmp_path / "rdsssl.toml") in message  # every error names the file
    assert "\n" not in message
    return message


def test_the_spec_example_loads_with_defaults_merged(tmp_path: Path) -> None:
    state = load_desired_state(write(tmp_path, SPEC_EXAMPLE))
    first, second = state.instances
    assert first.id == "pgm-bp1example" and first.tags is None
    assert first.acl is AclMode.CERT  # overridden
    assert first.replication_acl is AclMode.VERIFY_FULL  # inherited
    assert first.region == "cn-hangzhou" and first.crl is True
    assert first.ca_dir == tmp_path.resolve() / "ca"  # relative to the file's directory
    assert first.ca_bundle is None
    assert second.id is None and second.tags == {"env": "prod"}
    assert second.acl is AclMode.VERIFY_FULL
    assert "instances[2]" in second.source and "env=prod" in second.source


def test_an_instance_ca_bundle_replaces_the_default_ca_dir(tmp_path: Path) -> None:
    text = """
[defaults]
ca_dir = "ca"
[[instances]]
id = "pgm-a"
ca_bundle = "/etc/rdsssl/bundle.pem"
"""
    (spec,) = load_desired_state(write(tmp_path, text)).instances
    assert spec.ca_dir is None
    assert spec.ca_bundle == Path("/etc/rdsssl/bundle.pem")
    assert spec.crl is False and spec.acl is None and spec.region is None


def test_unknown_key_names_the_key_and_the_entry(tmp_path: Path) -> None:
    message = error_for(
        tmp_path,
        '[[instances]]\nid = "pgm-a"\nca_dir = "ca"\n'
        '[[instances]]\nid = "pgm-b"\nca_dir = "ca"\nacls = "cert"\n',
    )
    assert "instances[2] (id pgm-b)" in message and "'acls'" in message


def test_unknown_key_in_defaults(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[defaults]\nregoin = "x"\n[[instances]]\nid = "a"\n')
    assert "defaults" in message and "'regoin'" in message


def test_unknown_top_level_table(tmp_path: Path) -> None:
    assert "'instance'" in error_for(tmp_path, '[[instance]]\nid = "pgm-a"\n')


def test_bad_acl_value_lists_the_valid_ones(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[[instances]]\nid = "pgm-a"\nca_dir = "ca"\nacl = "full"\n')
    assert "acl = 'full'" in message and "verify-full" in message and "instances[1]" in message


def test_crl_must_be_a_boolean(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[[instances]]\nid = "pgm-a"\nca_dir = "ca"\ncrl = "yes"\n')
    assert "crl must be true or false" in message


def test_ca_dir_and_ca_bundle_in_one_table_are_refused(tmp_path: Path) -> None:
    message = error_for(
        tmp_path, '[defaults]\nca_dir = "ca"\nca_bundle = "b.pem"\n[[instances]]\nid = "pgm-a"\n'
    )
    assert "mutually exclusive" in message


def test_an_instance_without_any_ca_is_refused(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[[instances]]\nid = "pgm-a"\n')
    assert "no CA" in message and "instances[1] (id pgm-a)" in message


def test_crl_needs_ca_dir(tmp_path: Path) -> None:
    message = error_for(
        tmp_path, '[defaults]\ncrl = true\n[[instances]]\nid = "pgm-a"\nca_bundle = "b.pem"\n'
    )
    assert "crl = true needs ca_dir" in message


@pytest.mark.parametrize("selector", ['id = "pgm-a"\ntags = { env = "prod" }', 'acl = "cert"'])
def test_exactly_one_of_id_or_tags(tmp_path: Path, selector: str) -> None:
    message = error_for(tmp_path, f'[defaults]\nca_dir = "ca"\n[[instances]]\n{selector}\n')
    assert "exactly one of id" in message


def test_tags_must_be_strings(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[[instances]]\ntags = { env = 1 }\nca_dir = "ca"\n')
    assert "tags.env" in message


def test_duplicate_ids_name_both_entries(tmp_path: Path) -> None:
    message = error_for(
        tmp_path,
        '[defaults]\nca_dir = "ca"\n[[instances]]\nid = "pgm-a"\n[[instances]]\nid = "pgm-a"\n',
    )
    assert "instances[2]" in message and "instances[1]" in message


def test_no_instances_is_an_error(tmp_path: Path) -> None:
    assert "no [[instances]]" in error_for(tmp_path, '[defaults]\nca_dir = "ca"\n')


def test_toml_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[[instances]\nid = "pgm-a"\n')
    assert "invalid TOML" in message


def test_missing_file_is_a_config_error_with_exit_code_3(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_desired_state(tmp_path / "nope.toml")
    assert "nope.toml" in str(caught.value)
    assert caught.value.exit_code is ExitCode.BAD_INPUT


# ---------------------------------------------------------------- server SSL (ssl, server_ca_dir)


def test_ssl_is_unset_by_default_so_server_ssl_is_left_alone(tmp_path: Path) -> None:
    (spec,) = load_desired_state(
        write(tmp_path, '[[instances]]\nid = "a"\nca_dir = "ca"\n')
    ).instances
    assert spec.ssl is None and spec.server_ca_dir is None


def test_ssl_and_server_ca_dir_from_defaults_resolve_like_ca_dir(tmp_path: Path) -> None:
    text = """
[defaults]
ca_dir = "ca"
ssl = "custom"
server_ca_dir = "server-ca"
[[instances]]
id = "pgm-a"
[[instances]]
id = "pgm-b"
ssl = "cloud"
"""
    first, second = load_desired_state(write(tmp_path, text)).instances
    assert first.ssl == "custom"
    assert first.server_ca_dir == tmp_path.resolve() / "server-ca"  # relative to the file
    assert second.ssl == "cloud"  # overridden; the default's server_ca_dir is not its business
    assert second.server_ca_dir == tmp_path.resolve() / "server-ca"


def test_an_instance_server_ca_dir_may_be_absolute(tmp_path: Path) -> None:
    text = '[[instances]]\nid = "a"\nca_dir = "ca"\nssl = "custom"\nserver_ca_dir = "/srv/sca"\n'
    (spec,) = load_desired_state(write(tmp_path, text)).instances
    assert spec.server_ca_dir == Path("/srv/sca")


def test_a_bad_ssl_value_names_the_entry_and_the_choices(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[[instances]]\nid = "pgm-a"\nca_dir = "ca"\nssl = "aliyun"\n')
    assert "instances[1] (id pgm-a)" in message
    assert "ssl = 'aliyun'" in message and "cloud, custom" in message


def test_ssl_must_be_a_string(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[defaults]\nssl = true\n[[instances]]\nid = "a"\nca_dir = "c"\n')
    assert "defaults" in message and "ssl must be a non-empty string" in message


def test_custom_ssl_needs_a_server_ca_dir(tmp_path: Path) -> None:
    message = error_for(
        tmp_path, '[defaults]\nca_dir = "ca"\n[[instances]]\nid = "pgm-a"\nssl = "custom"\n'
    )
    assert "instances[1] (id pgm-a)" in message
    assert 'ssl = "custom" needs server_ca_dir' in message and "rdsssl ca init" in message


@pytest.mark.parametrize("ssl_line", ["", 'ssl = "cloud"\n'])
def test_an_instance_server_ca_dir_without_custom_ssl_is_refused(
    tmp_path: Path, ssl_line: str
) -> None:
    text = f'[[instances]]\nid = "pgm-a"\nca_dir = "ca"\n{ssl_line}server_ca_dir = "sca"\n'
    message = error_for(tmp_path, text)
    assert "instances[1] (id pgm-a)" in message
    assert 'server_ca_dir is only used with ssl = "custom"' in message


def test_the_server_ca_must_not_be_the_client_ca_store(tmp_path: Path) -> None:
    text = (
        '[defaults]\nca_dir = "ca"\n[[instances]]\ntags = { env = "prod" }\n'
        'ssl = "custom"\nserver_ca_dir = "./ca"\n'
    )
    message = error_for(tmp_path, text)
    assert "instances[1] (tags env=prod)" in message
    assert "server_ca_dir and ca_dir are the same store" in message


def test_unknown_keys_list_the_ssl_keys(tmp_path: Path) -> None:
    message = error_for(tmp_path, '[[instances]]\nid = "a"\nca_dir = "c"\nsslmode = "cloud"\n')
    assert "'sslmode'" in message and "server_ca_dir" in message and "ssl" in message
