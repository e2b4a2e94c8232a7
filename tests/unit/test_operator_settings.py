"""Operator settings: defaults, parsing of AIML_* variables, errors that name the variable."""

from __future__ import annotations

import pytest

from ml_training_operator.settings import SettingsError, WebhookMode, load_settings, unknown_variables


def test_defaults():
    settings = load_settings({})
    assert settings.namespaces == []
    assert settings.gpu_resource_name == "nvidia.com/gpu"
    assert settings.default_trainer_image == "ghcr.io/aiml-mns/aiml-trainer:0.1.0"
    assert settings.progress_patch_interval_seconds == 2.0
    assert settings.webhook_mode is WebhookMode.LOCAL
    assert settings.progress_endpoint_url is None


def test_lists_accept_commas_and_json():
    assert load_settings({"AIML_NAMESPACES": "a, b,"}).namespaces == ["a", "b"]
    assert load_settings({"AIML_NAMESPACES": '["a", "b"]'}).namespaces == ["a", "b"]
    assert load_settings({"AIML_NAMESPACES": ""}).namespaces == []


def test_first_image_is_default():
    settings = load_settings({"AIML_TRAINER_IMAGES": "one:1,two:2"})
    assert settings.default_trainer_image == "one:1"
    assert settings.trainer_images == ["one:1", "two:2"]


def test_empty_image_list_is_rejected():
    with pytest.raises(SettingsError, match="AIML_TRAINER_IMAGES"):
        load_settings({"AIML_TRAINER_IMAGES": ""})


def test_json_node_selector_and_tolerations():
    settings = load_settings(
        {"AIML_DEFAULT_NODE_SELECTOR": '{"pool": "gpu"}', "AIML_DEFAULT_TOLERATIONS": '[{"key": "k", "operator": "Exists"}]'}
    )
    assert settings.default_node_selector == {"pool": "gpu"}
    assert settings.default_tolerations == [{"key": "k", "operator": "Exists"}]


def test_invalid_json_names_variable():
    with pytest.raises(SettingsError, match="AIML_DEFAULT_NODE_SELECTOR: invalid JSON"):
        load_settings({"AIML_DEFAULT_NODE_SELECTOR": "{pool"})


def test_wrong_type_names_variable():
    with pytest.raises(SettingsError, match="AIML_DEFAULT_NODE_SELECTOR"):
        load_settings({"AIML_DEFAULT_NODE_SELECTOR": '["not", "a", "map"]'})


def test_invalid_number_names_variable():
    with pytest.raises(SettingsError, match="AIML_PROGRESS_PATCH_INTERVAL_SECONDS"):
        load_settings({"AIML_PROGRESS_PATCH_INTERVAL_SECONDS": "0"})
    with pytest.raises(SettingsError, match="AIML_STATUS_PORT"):
        load_settings({"AIML_STATUS_PORT": "70000"})


def test_invalid_toleration_operator_names_variable():
    with pytest.raises(SettingsError, match="AIML_DEFAULT_TOLERATIONS"):
        load_settings({"AIML_DEFAULT_TOLERATIONS": '[{"key": "k", "operator": "NotIn"}]'})


def test_endpoint_url_must_be_http():
    with pytest.raises(SettingsError, match="AIML_PROGRESS_ENDPOINT_URL"):
        load_settings({"AIML_PROGRESS_ENDPOINT_URL": "127.0.0.1:8080"})
    assert load_settings({"AIML_PROGRESS_ENDPOINT_URL": "http://127.0.0.1:8080/"}).progress_endpoint_url == "http://127.0.0.1:8080"


def test_service_webhook_mode_needs_service():
    with pytest.raises(SettingsError, match="AIML_WEBHOOK_SERVICE_NAME"):
        load_settings({"AIML_WEBHOOK_MODE": "service"})
    settings = load_settings(
        {"AIML_WEBHOOK_MODE": "service", "AIML_WEBHOOK_SERVICE_NAME": "aiml", "AIML_WEBHOOK_SERVICE_NAMESPACE": "aiml-system"}
    )
    assert settings.webhook_mode is WebhookMode.SERVICE


def test_unknown_webhook_mode_names_variable():
    with pytest.raises(SettingsError, match="AIML_WEBHOOK_MODE"):
        load_settings({"AIML_WEBHOOK_MODE": "tunnel"})


def test_empty_optional_value_means_unset():
    assert load_settings({"AIML_TTL_SECONDS_AFTER_FINISHED": ""}).ttl_seconds_after_finished is None
    assert load_settings({"AIML_TTL_SECONDS_AFTER_FINISHED": "30"}).ttl_seconds_after_finished == 30


def test_unknown_variables_are_listed():
    assert unknown_variables({"AIML_NAMESPACE": "x", "AIML_NAMESPACES": "y", "HOME": "/"}) == ["AIML_NAMESPACE"]
