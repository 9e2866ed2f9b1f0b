"""The AWS template in deploy/: cfn-lint clean, and its schedules fire jobs the service registers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cfnlint.decode import decode

from lambda_trigger.events import read_event
from lambda_trigger.lifecycle import COMPLETE_RESERVE
from lambda_trigger.lifecycle_events import TERMINATE_DETAIL_TYPE, TERMINATING
from lambda_trigger.settings import Settings as LambdaSettings
from service.jobs import load_jobs
from service.schedules import Schedule
from service.schedules.sync import Target, desired
from tests.support.live import REPO

TEMPLATE = REPO / "deploy" / "template.yaml"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"
# What EventBridge Scheduler puts in place of the Input's placeholders when a schedule fires
# (https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-schedule-context-attributes.html).
SCHEDULED_TIME = "2026-11-22T15:00:00Z"
EXECUTION_ID = "d1b7a6f0-8a2c-4a53-9c1e-2b4f0e5c7a91"
NO_VALUE = {"Ref": "AWS::NoValue"}
# The fleet parameters left empty (the default), or all set.
NO_FLEET = {"HasBroadcastJobs": False, "CheckCapacity": False, "HasScaleInHook": False}
FLEET = dict.fromkeys(NO_FLEET, True)
FLEET_VALUES = {
    "TargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef",
    "AutoScalingGroupName": "web-asg",
    "BroadcastJobs": "local-cache,reload-config",
}
# What the other variables hold once deployed (they are references in the template).
DEPLOYED = {
    "APP_URL": "https://app.internal",
    "TRIGGER_SECRET_ARN": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:trigger-AbCdEf",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """The template as CloudFormation reads it: intrinsics become `{"Ref": ...}` / `{"Fn::...": ...}`."""
    parsed, problems = decode(str(TEMPLATE))
    assert not problems, [str(p) for p in problems]
    assert isinstance(parsed, dict)
    return parsed


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CFN_LINT), str(path)], capture_output=True, text=True, timeout=180)


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def _default(template: dict[str, Any], value: Any) -> Any:
    """A property's value, with a `Ref` to a parameter replaced by the parameter's default."""
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in template["Parameters"]:
        return template["Parameters"][value["Ref"]]["Default"]
    return value


def _fire(schedule: dict[str, Any]) -> dict[str, Any]:
    """The event the Lambda receives when this schedule fires: its Input, placeholders filled."""
    text = schedule["Properties"]["Target"]["Input"]
    text = text.replace("<aws.scheduler.scheduled-time>", SCHEDULED_TIME)
    payload: dict[str, Any] = json.loads(text.replace("<aws.scheduler.execution-id>", EXECUTION_ID))
    return payload


def _as_unix_cron(expression: str) -> str:
    """`cron(m h dom mon dow year)` as the five-field cron the service's jobs declare."""
    assert expression.startswith("cron(") and expression.endswith(")"), expression
    minute, hour, dom, month, dow, _year = expression[5:-1].split()
    if re.fullmatch(r"[\d,-]+", dow):  # AWS counts weekdays 1-7 from Sunday, cron 0-6
        dow = re.sub(r"\d+", lambda m: str(int(m.group()) - 1), dow)
    return " ".join([minute, hour, dom.replace("?", "*"), month, dow.replace("?", "*")])


def _firings(expression: str, count: int = 40) -> list[datetime]:
    """The first slots of 2026, as EventBridge Scheduler fires them (service.schedules)."""
    start, end = datetime.fromisoformat("2026-01-01T00:00Z"), datetime.fromisoformat("2027-12-31T00:00Z")
    return Schedule.parse(expression).slots_between(start, end, limit=count)


def _function_env(template: dict[str, Any]) -> dict[str, Any]:
    props = template["Resources"]["TriggerFunction"]["Properties"]
    variables: dict[str, Any] = props["Environment"]["Variables"]
    return variables


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def _choose(value: Any, conditions: dict[str, bool]) -> Any:
    """`value` with each `Fn::If` on one of `conditions` decided, and `AWS::NoValue` left out."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, chosen, otherwise = value["Fn::If"]
            if name not in conditions:
                return value  # decided by CloudFormation, as written
            return _choose(chosen if conditions[name] else otherwise, conditions)
        items = {key: _choose(item, conditions) for key, item in value.items()}
        return {key: item for key, item in items.items() if item != NO_VALUE}
    if isinstance(value, list):
        return [item for item in (_choose(item, conditions) for item in value) if item != NO_VALUE]
    return value


def _literal(variables: dict[str, Any]) -> dict[str, str]:
    """Environment values as deployed with the fleet parameters set (`FLEET_VALUES`)."""
    refs = {
        name: FLEET_VALUES[value["Ref"]]
        for name, value in variables.items()
        if value in [{"Ref": parameter} for parameter in FLEET_VALUES]
    }
    return {k: v for k, v in variables.items() if isinstance(v, str)} | refs


def _granted(statements: list[dict[str, Any]]) -> dict[str, Any]:
    """Action -> Resource."""
    granted = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        granted |= dict.fromkeys(actions, statement["Resource"])
    return granted


def test_it_passes_cfn_lint_without_errors_or_warnings() -> None:
    done = _lint(TEMPLATE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_it_has_a_lint_that_rejects_a_broken_template(tmp_path: Path) -> None:
    # The gate above is only worth something if cfn-lint really checks this template's resources.
    broken = tmp_path / "template.yaml"
    text = TEMPLATE.read_text()
    broken.write_text(text.replace('{ Mode: "OFF" }', '{ Mode: "SOMETIMES" }'))
    done = _lint(broken)
    assert done.returncode != 0 and "SOMETIMES" in done.stdout


def test_it_schedules_the_shipped_daily_and_monthly_jobs_by_name(template: dict[str, Any]) -> None:
    registered = load_jobs(()).names()
    schedules = _of_type(template, "AWS::Scheduler::Schedule")
    targets = {}
    for schedule in schedules.values():
        # Read exactly as the handler reads it: no RULE_JOBS, since the Input names the job.
        firing = read_event(_fire(schedule), _function_env(template).get("RULE_JOBS", {}))
        name = schedule["Properties"]["Name"]
        assert firing.job in registered, f"schedule {name} fires {firing.job}, which is not registered"
        assert (firing.slot, firing.event_id) == (SCHEDULED_TIME, EXECUTION_ID)
        targets[name] = firing.job
    assert {"Daily": "daily", "Monthly": "monthly"}.items() <= targets.items()
    assert all(name.lower() == job for name, job in targets.items()), "a schedule is named for its job"


def test_it_fires_each_schedule_when_the_job_expects_it_in_the_batch_time_zone(
    template: dict[str, Any],
) -> None:
    registry = load_jobs(())
    assert ZoneInfo(template["Parameters"]["BatchTimezone"]["Default"]).key == "UTC"
    for schedule in _of_type(template, "AWS::Scheduler::Schedule").values():
        props = schedule["Properties"]
        assert props["ScheduleExpressionTimezone"] == {"Ref": "BatchTimezone"}
        assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}
        expression = _default(template, props["ScheduleExpression"])
        cron = _as_unix_cron(expression)
        # Local midnight: the slot `batch-trigger token JOB --date D` names, so a manual
        # re-trigger of a scheduled day is answered as that day's duplicate.
        assert cron.split()[:2] == ["0", "0"], cron
        spec = registry.get(_fire(schedule)["job"])
        if spec.name in ("daily", "monthly"):  # the shipped jobs declare what the watchdog expects
            assert spec.schedule is not None and spec.schedule_timezone is None
        if spec.schedule is not None:
            assert _firings(expression) == _firings(spec.schedule), f"{props['Name']}: {expression}"


def test_it_runs_the_zip_that_make_builds_with_time_for_the_deadline_and_alert(
    template: dict[str, Any],
) -> None:
    props = template["Resources"]["TriggerFunction"]["Properties"]
    assert (TEMPLATE.parent / props["CodeUri"]).resolve() == REPO / "dist" / "lambda_trigger.zip"
    assert "deploy/build_lambda_zip.py --output dist/lambda_trigger.zip" in (REPO / "Makefile").read_text()
    assert props["Handler"] == "lambda_trigger.handler.handler"
    assert props["Runtime"].startswith("python3.") and int(props["Runtime"].split(".")[1]) >= 11
    env = _function_env(template)
    defaults = LambdaSettings(app_url="https://unused.example")
    deadline = float(env.get("DEADLINE_SECONDS", defaults.deadline))
    reserve = float(env.get("ALERT_RESERVE_SECONDS", defaults.alert_reserve))
    assert props["Timeout"] >= deadline + reserve


def test_it_sets_only_variables_the_lambda_reads(template: dict[str, Any]) -> None:
    env = _function_env(template)
    source = (REPO / "lambda_trigger" / "settings.py").read_text()
    assert {"APP_URL", "TRIGGER_SECRET_ARN", "SLACK_WEBHOOK_SECRET_ARN"} <= set(env)
    assert [name for name in env if f'"{name}"' not in source] == []
    literal = {k: v for k, v in env.items() if isinstance(v, str)} | {
        "APP_URL": "https://app.internal",
        "TRIGGER_SECRET_ARN": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:trigger-AbCdEf",
    }
    LambdaSettings.from_env(literal)  # the literal values are ones the Lambda accepts


def test_it_grants_the_function_only_its_secrets_logs_and_failure_queue(template: dict[str, Any]) -> None:
    role = _choose(template["Resources"]["FunctionRole"], NO_FLEET)
    granted = {}
    for statement in _statements(role):
        assert statement["Effect"] == "Allow" and "*" not in json.dumps(statement["Resource"])
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            granted[action] = statement["Resource"]
    assert set(granted) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "secretsmanager:GetSecretValue",
        "sqs:SendMessage",
    }
    env = _function_env(template)
    readable = granted["secretsmanager:GetSecretValue"]
    assert readable[0] == env["TRIGGER_SECRET_ARN"]
    assert readable[1] == env["SLACK_WEBHOOK_SECRET_ARN"]  # both conditional on the same parameter
    assert granted["sqs:SendMessage"] == {"Fn::GetAtt": ["FailureQueue", "Arn"]}
    # ENI permissions come only with the VPC parameters.
    assert role["Properties"]["ManagedPolicyArns"]["Fn::If"][0] == "InVpc"
    assert template["Resources"]["TriggerFunction"]["Properties"]["VpcConfig"]["Fn::If"][0] == "InVpc"


def test_it_lets_the_schedules_invoke_this_function_and_nothing_else(template: dict[str, Any]) -> None:
    role = template["Resources"]["SchedulerRole"]
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "scheduler.amazonaws.com"}]
    assert _statements(role) == [
        {
            "Effect": "Allow",
            "Action": "lambda:InvokeFunction",
            "Resource": {"Fn::GetAtt": ["TriggerFunction", "Arn"]},
        },
        {  # and hand a firing it could not deliver to the dead-letter queue
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": ["FailureQueue", "Arn"]},
        },
    ]
    for schedule in _of_type(template, "AWS::Scheduler::Schedule").values():
        target = schedule["Properties"]["Target"]
        assert target["Arn"] == {"Fn::GetAtt": ["TriggerFunction", "Arn"]}
        assert target["RoleArn"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}


def test_it_sends_failed_invocations_to_a_queue_with_alarms(template: dict[str, Any]) -> None:
    invoke = _of_type(template, "AWS::Lambda::EventInvokeConfig")
    assert [c["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] for c in invoke.values()] == [
        {"Fn::GetAtt": ["FailureQueue", "Arn"]}
    ]
    watched = {
        (a["Properties"]["Namespace"], a["Properties"]["MetricName"])
        for a in _of_type(template, "AWS::CloudWatch::Alarm").values()
    }
    assert {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Scheduler", "InvocationDroppedCount"),
    } <= watched


def test_it_adds_the_fleet_parts_only_when_their_parameters_are_set(template: dict[str, Any]) -> None:
    params, conditions = template["Parameters"], template["Conditions"]
    for name in FLEET_VALUES:
        assert params[name]["Default"] == ""
        assert re.fullmatch(params[name]["AllowedPattern"], FLEET_VALUES[name]), name
        assert re.fullmatch(params[name]["AllowedPattern"], ""), name
    assert conditions["HasScaleInHook"] == {
        "Fn::And": [{"Condition": "HasAutoScalingGroup"}, {"Condition": "HasTargetGroup"}]
    }
    hook_parts = {
        "ScaleInHook",
        "LifecycleLogGroup",
        "LifecycleRole",
        "LifecycleFunction",
        "ScaleInRule",
        "ScaleInInvokePermission",
    }
    resources = template["Resources"].items()
    assert {name for name, res in resources if res.get("Condition") == "HasScaleInHook"} == hook_parts
    # The Lambda refuses BROADCAST_JOBS without TARGET_GROUP_ARN; the stack refuses it first.
    (assertion,) = template["Rules"]["BroadcastNeedsTargetGroup"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "TargetGroupArn"}, ""]}]}


def test_it_lets_broadcasts_describe_the_fleet_and_nothing_more(template: dict[str, Any]) -> None:
    role = _choose(template["Resources"]["FunctionRole"], FLEET)
    plain = _granted(_statements(_choose(template["Resources"]["FunctionRole"], NO_FLEET)))
    added = {k: v for k, v in _granted(_statements(role)).items() if k not in plain}
    # Read-only calls that support no resource-level permissions: "*" is all IAM accepts.
    assert added == dict.fromkeys(
        [
            "elasticloadbalancing:DescribeTargetHealth",
            "ec2:DescribeInstances",
            "autoscaling:DescribeAutoScalingGroups",
        ],
        "*",
    )
    env = _choose(_function_env(template), FLEET)
    assert {"BROADCAST_JOBS", "TARGET_GROUP_ARN", "AUTOSCALING_GROUP_NAME"} <= set(env)
    assert not {"BROADCAST_JOBS", "TARGET_GROUP_ARN"} & set(_choose(_function_env(template), NO_FLEET))
    settings = LambdaSettings.from_env(_literal(env) | DEPLOYED).fleet
    assert settings.broadcast_jobs == {"local-cache", "reload-config"}
    assert settings.autoscaling_group == FLEET_VALUES["AutoScalingGroupName"]


def test_it_waits_for_batches_on_scale_in_with_a_hook_a_rule_and_scoped_permissions(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    hook = resources["ScaleInHook"]["Properties"]
    function = resources["LifecycleFunction"]["Properties"]
    assert (hook["LifecycleTransition"], hook["DefaultResult"]) == (TERMINATING, "CONTINUE")
    assert hook["AutoScalingGroupName"] == {"Ref": "AutoScalingGroupName"}
    env = function["Environment"]["Variables"]
    source = (REPO / "lambda_trigger" / "settings.py").read_text()
    assert [name for name in env if f'"{name}"' not in source] == []
    settings = LambdaSettings.from_env(_literal(_choose(env, FLEET)) | DEPLOYED)
    # Heartbeats come often enough to keep the instance waiting; the function outlives its wait.
    assert settings.fleet.lifecycle_heartbeat < hook["HeartbeatTimeout"]
    assert (
        function["Timeout"] >= settings.fleet.lifecycle_max_wait + settings.alert_reserve + COMPLETE_RESERVE
    )
    assert function["Handler"] == "lambda_trigger.lifecycle.handler"
    assert function["CodeUri"] == resources["TriggerFunction"]["Properties"]["CodeUri"]
    assert function["VpcConfig"]["Fn::If"][0] == "InVpc"  # it calls the instance's private IP
    rule = resources["ScaleInRule"]["Properties"]
    assert rule["EventPattern"] == {
        "source": ["aws.autoscaling"],
        "detail-type": [TERMINATE_DETAIL_TYPE],
        "detail": {"AutoScalingGroupName": [{"Ref": "AutoScalingGroupName"}]},
    }
    assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": ["LifecycleFunction", "Arn"]}]
    permission = resources["ScaleInInvokePermission"]["Properties"]
    assert (permission["Principal"], permission["SourceArn"]) == (
        "events.amazonaws.com",
        {"Fn::GetAtt": ["ScaleInRule", "Arn"]},
    )
    granted = _granted(_statements(resources["LifecycleRole"]))
    group_arn = granted["autoscaling:CompleteLifecycleAction"]["Fn::Sub"]
    assert group_arn.endswith(":autoScalingGroup:*:autoScalingGroupName/${AutoScalingGroupName}")
    assert (
        granted["autoscaling:RecordLifecycleActionHeartbeat"]
        == granted["autoscaling:CompleteLifecycleAction"]
    )
    assert sorted(action for action, resource in granted.items() if resource == "*") == [
        "ec2:DescribeInstances",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetHealth",
    ]


def test_it_makes_the_same_schedules_as_the_cli_or_leaves_them_to_it(template: dict[str, Any]) -> None:
    # One owner per job: the template's Daily and Monthly (ScheduleOwner=template), or
    # `batch-trigger schedules apply` (ScheduleOwner=cli), which must fire them the same way.
    registry = load_jobs(())
    target = Target("function-arn", "role-arn", "queue-arn")
    wanted = desired([(s.name, Schedule.parse(s.schedule or "")) for s in registry if s.schedule], target,
                     datetime.fromisoformat("2026-11-22T00:00Z"))
    refs = {
        "function-arn": {"Fn::GetAtt": ["TriggerFunction", "Arn"]},
        "role-arn": {"Fn::GetAtt": ["SchedulerRole", "Arn"]},
        "queue-arn": {"Fn::GetAtt": ["FailureQueue", "Arn"]},
    }
    for name in ("Daily", "Monthly"):
        schedule = template["Resources"][f"{name}Schedule"]
        assert schedule["Condition"] == "TemplateSchedules"
        props, cli = schedule["Properties"], wanted[name.lower()]
        assert props["GroupName"] == {"Ref": "ScheduleGroup"}
        assert _default(template, props["ScheduleExpression"]) == cli["ScheduleExpression"]
        assert props["FlexibleTimeWindow"] == cli["FlexibleTimeWindow"]
        assert json.loads(props["Target"]["Input"]) == json.loads(cli["Target"]["Input"])
        assert props["Target"]["RetryPolicy"] == cli["Target"]["RetryPolicy"]
        assert props["Target"]["DeadLetterConfig"]["Arn"] == refs[cli["Target"]["DeadLetterConfig"]["Arn"]]
        assert props["Target"]["Arn"] == refs["function-arn"]
        assert props["Target"]["RoleArn"] == refs["role-arn"]
    owner = template["Conditions"]["TemplateSchedules"]
    assert owner == {"Fn::Equals": [{"Ref": "ScheduleOwner"}, "template"]}
    outputs = template["Outputs"]
    assert outputs["SchedulerRoleArn"]["Value"] == refs["role-arn"]
    assert outputs["FailureQueueArn"]["Value"] == refs["queue-arn"]
    granted = _granted(_statements(template["Resources"]["SchedulerRole"]))
    assert granted["sqs:SendMessage"] == refs["queue-arn"]  # the dead-letter queue takes the Scheduler's
