"""`config.load_settings`: defaults, YAML, environment precedence and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from cirrus_feed.config import CIRRUS_ENV, Settings, load_settings
from cirrus_feed.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
AWS_ENV = {
    "CIRRUS_STATE_DB": "env-state",
    "CIRRUS_PAYLOAD_BUCKET": "env-bucket",
    "CIRRUS_BASE_WORKFLOW_ARN": "arn:aws:states:eu-west-1:111111111111:stateMachine:env-",
    "CIRRUS_PROCESS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/111111111111/env-process",
}


def write(tmp_path: Path, text: str, name: str = "settings.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_settings_defaults_without_file_or_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no config/local.yaml here

    settings = load_settings(env={})

    assert settings.source == "defaults"
    assert settings.backend == "local"
    assert settings.local.root == Path("var/cirrus-feed")
    assert settings.local.visibility_timeout == 180
    assert settings.local.max_receives == 5
    assert settings.local.lease_seconds == 300
    assert settings.process.workers == 2
    assert settings.process.batch_size == 10
    assert settings.aws.region == "us-east-1"
    assert settings.aws.payload_root == "cirrus"
    assert settings.aws.state_db is None
    assert settings.workflows == {}


def test_load_settings_reads_yaml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "local:\n  root: /data/cf\n  lease_seconds: 7\n"
        "process:\n  workers: 3\n"
        "workflows:\n  publish-only:\n    tasks:\n      - task: publish\n",
    )

    settings = load_settings(path, env={})

    assert settings.source == str(path)
    assert settings.local.root == Path("/data/cf")
    assert settings.local.lease_seconds == 7
    assert settings.local.max_receives == 5  # untouched fields keep their default
    assert settings.process.workers == 3
    assert [t.task for t in settings.workflows["publish-only"].tasks] == ["publish"]


def test_load_settings_path_from_cirrus_feed_config_env(tmp_path: Path) -> None:
    path = write(tmp_path, "process:\n  workers: 4\n")

    settings = load_settings(env={"CIRRUS_FEED_CONFIG": str(path)})

    assert settings.source == str(path)
    assert settings.process.workers == 4


def test_load_settings_empty_file_is_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), env={})

    assert settings.backend == "local"
    assert settings.local.root == Path("var/cirrus-feed")


def test_load_settings_cirrus_env_fills_and_overrides_aws(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "aws:\n  region: us-west-2\n  state_db: yaml-state\n  payload_root: yaml-root\n",
    )
    env = {
        **AWS_ENV,
        "CIRRUS_PUBLISH_TOPIC_ARN": "arn:aws:sns:eu-west-1:111111111111:publish",
        "CIRRUS_WORKFLOW_EVENT_TOPIC_ARN": "arn:aws:sns:eu-west-1:111111111111:events",
        "CIRRUS_PAYLOAD_ROOT_PREFIX": "env-root",
        "AWS_REGION": "eu-west-1",
        "CIRRUS_FEED_AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "CIRRUS_FEED_BACKEND": "aws",
    }

    settings = load_settings(path, env=env)

    assert settings.backend == "aws"
    aws = settings.aws
    assert aws.state_db == "env-state"  # env beats YAML
    assert aws.region == "eu-west-1"
    assert aws.payload_root == "env-root"
    assert aws.payload_bucket == "env-bucket"  # env fills what YAML lacks
    assert aws.base_workflow_arn == AWS_ENV["CIRRUS_BASE_WORKFLOW_ARN"]
    assert aws.process_queue_url == AWS_ENV["CIRRUS_PROCESS_QUEUE_URL"]
    assert aws.publish_topic_arn == env["CIRRUS_PUBLISH_TOPIC_ARN"]
    assert aws.workflow_event_topic_arn == env["CIRRUS_WORKFLOW_EVENT_TOPIC_ARN"]
    assert aws.endpoint_url == "http://127.0.0.1:5000"


def test_load_settings_yaml_aws_fields_kept_when_env_sets_others(tmp_path: Path) -> None:
    path = write(
        tmp_path, "backend: local\naws:\n  region: us-west-2\n  allowed_buckets: [other]\n"
    )

    settings = load_settings(path, env={"CIRRUS_STATE_DB": "env-state"})

    assert settings.aws.region == "us-west-2"
    assert settings.aws.allowed_buckets == ["other"]
    assert settings.aws.state_db == "env-state"


def test_load_settings_every_cirrus_env_var_maps_to_an_aws_field() -> None:
    fields = set(Settings.model_fields["aws"].annotation.model_fields)  # type: ignore[union-attr]  # a model class

    assert set(CIRRUS_ENV.values()) <= fields


def test_load_settings_cirrus_feed_backend_env_overrides_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "backend: aws\n")

    assert load_settings(path, env={"CIRRUS_FEED_BACKEND": "local"}).backend == "local"
    assert load_settings(path, env={**AWS_ENV}).backend == "aws"


def test_load_settings_cirrus_feed_local_root_env(tmp_path: Path) -> None:
    path = write(tmp_path, "local:\n  root: from-yaml\n  lease_seconds: 9\n")

    settings = load_settings(path, env={"CIRRUS_FEED_LOCAL_ROOT": str(tmp_path / "env")})

    assert settings.local.root == tmp_path / "env"
    assert settings.local.lease_seconds == 9


def test_load_settings_unknown_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "local:\n  root: x\n  visibilty_timeout: 3\n")

    with pytest.raises(ConfigError, match=r"local\.visibilty_timeout") as info:
        load_settings(path, env={})

    assert str(path) in str(info.value)


def test_load_settings_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workflow"):
        load_settings(write(tmp_path, "workflow: {}\n"), env={})


def test_load_settings_bad_value_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"process\.workers"):
        load_settings(write(tmp_path, "process:\n  workers: 0\n"), env={})


def test_load_settings_unknown_backend_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="backend"):
        load_settings(write(tmp_path, ""), env={"CIRRUS_FEED_BACKEND": "gcp"})


def test_load_settings_aws_backend_without_state_db_names_it(tmp_path: Path) -> None:
    env = {k: v for k, v in AWS_ENV.items() if k != "CIRRUS_STATE_DB"}

    with pytest.raises(ConfigError, match=r"aws\.state_db \(or CIRRUS_STATE_DB\)") as info:
        load_settings(write(tmp_path, "backend: aws\n"), env=env)

    message = str(info.value)
    assert "payload_bucket" not in message  # only what is missing is named
    assert "settings.yaml" in message


def test_load_settings_aws_backend_names_every_missing_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "backend: aws\n"), env={})

    for field, var in [
        ("state_db", "CIRRUS_STATE_DB"),
        ("payload_bucket", "CIRRUS_PAYLOAD_BUCKET"),
        ("base_workflow_arn", "CIRRUS_BASE_WORKFLOW_ARN"),
        ("process_queue_url", "CIRRUS_PROCESS_QUEUE_URL"),
    ]:
        assert f"aws.{field} (or {var})" in str(info.value)


def test_load_settings_workflow_with_unknown_task_names_the_workflow(tmp_path: Path) -> None:
    path = write(tmp_path, "workflows:\n  my-flow:\n    tasks:\n      - task: publsh\n")

    with pytest.raises(ConfigError, match=r"workflows\.my-flow") as info:
        load_settings(path, env={})

    assert "publsh" in str(info.value)


def test_load_settings_workflow_with_unimportable_task_names_it(tmp_path: Path) -> None:
    path = write(
        tmp_path, "workflows:\n  my-flow:\n    tasks:\n      - task: no_such_module_x:run\n"
    )

    with pytest.raises(ConfigError, match="my-flow") as info:
        load_settings(path, env={})

    assert "no_such_module_x" in str(info.value)


def test_load_settings_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError, match=r"absent\.yaml"):
        load_settings(path, env={})


def test_load_settings_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "local: [unclosed\n", name="broken.yaml")

    with pytest.raises(ConfigError, match=r"broken\.yaml.*not valid YAML"):
        load_settings(path, env={})


def test_load_settings_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"), env={})


def test_load_settings_repo_local_yaml_loads() -> None:
    settings = load_settings(REPO / "config" / "local.yaml", env={})

    assert settings.backend == "local"
    assert {"publish-only", "cog-archive"} <= set(settings.workflows)


def test_load_settings_repo_aws_example_loads() -> None:
    settings = load_settings(REPO / "config" / "aws.example.yaml", env={})

    assert settings.backend == "aws"
    assert settings.aws.region == "us-west-2"
    assert settings.aws.state_db == "my-cirrus-state"
    assert settings.aws.base_workflow_arn is not None
    assert settings.aws.base_workflow_arn.endswith(":stateMachine:my-cirrus-")
    assert settings.process.wait_seconds == 20


def test_load_settings_default_path_is_config_local_yaml(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)

    settings = load_settings(env={})

    assert settings.source == str(Path("config/local.yaml"))
    assert "publish-only" in settings.workflows


# -- the backend rule ---------------------------------------------------------------------------


def test_load_settings_cirrus_variables_select_aws(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "feeders: {}\n"), env={**AWS_ENV})

    assert settings.backend == "aws"
    assert settings.aws.state_db == "env-state"


def test_load_settings_cirrus_variables_select_aws_without_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no config/local.yaml here

    assert load_settings(env={**AWS_ENV}).backend == "aws"


def test_load_settings_explicit_backend_overrides_cirrus_variables(tmp_path: Path) -> None:
    path = write(tmp_path, "backend: local\n")

    assert load_settings(path, env={**AWS_ENV}).backend == "local"
    assert load_settings(None, env={**AWS_ENV, "CIRRUS_FEED_BACKEND": "local"}).backend == "local"


def test_load_settings_partial_cirrus_variables_name_the_missing(tmp_path: Path) -> None:
    env = {"CIRRUS_STATE_DB": "s", "CIRRUS_PUBLISH_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t"}

    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, "{}\n"), env=env)

    message = str(raised.value)
    assert "select the aws backend" in message
    assert "CIRRUS_PAYLOAD_BUCKET, CIRRUS_BASE_WORKFLOW_ARN, CIRRUS_PROCESS_QUEUE_URL" in message
    assert "CIRRUS_STATE_DB is" not in message


def test_load_settings_partial_cirrus_variables_completed_by_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "aws:\n  payload_bucket: b\n  base_workflow_arn: arn:x-\n  process_queue_url: q\n",
    )

    settings = load_settings(path, env={"CIRRUS_STATE_DB": "s"})

    assert settings.backend == "aws"
    assert (settings.aws.state_db, settings.aws.payload_bucket) == ("s", "b")


def test_load_settings_our_own_and_sdk_variables_select_nothing(tmp_path: Path) -> None:
    env = {"AWS_REGION": "eu-west-1", "CIRRUS_FEED_FEED_TABLE": "feeds"}

    assert load_settings(write(tmp_path, "{}\n"), env=env).backend == "local"


def test_load_settings_lambda_runtime_never_implies_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "local.yaml").write_text("backend: local\n")
    monkeypatch.chdir(tmp_path)  # a packaged config/local.yaml is not picked up in a Lambda
    lambda_env = {"AWS_LAMBDA_FUNCTION_NAME": "fn", "AWS_REGION": "us-east-1"}

    with pytest.raises(ConfigError, match="local backend is not chosen implicitly"):
        load_settings(env=lambda_env)
    assert load_settings(env={**lambda_env, **AWS_ENV}).backend == "aws"
    assert load_settings(env={**lambda_env, "CIRRUS_FEED_BACKEND": "local"}).backend == "local"
