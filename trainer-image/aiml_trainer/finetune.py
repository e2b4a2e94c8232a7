"""Fine-tuning a pre-trained Hugging Face model for text classification with PEFT.

The base model is loaded with ``AutoModelForSequenceClassification``, which adds a freshly
initialised classification head. LoRA or IA3 then wraps the chosen modules; only the adapter
and the new head (PEFT's ``modules_to_save``) are trained. FULL trains every parameter and is
meant as a baseline for measurements. The adapter is saved in PEFT's own format, next to the
tokenizer and ``aiml-metadata.json`` (base model, method, task, label names).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import pathlib
from dataclasses import dataclass

import torch
from ml_training_operator.protocol import FineTuningConfig, FineTuningMethod, Quantization, Task
from safetensors.torch import load_file
from torch import nn

from .data import Split
from .errors import ConfigError, TrainingFailed
from .runtime import Runtime

log = logging.getLogger(__name__)

METADATA_FILE = "aiml-metadata.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
EVALUATION_BATCH_SIZE = 64

# Defaults for architectures that PEFT's own tables (peft.utils.*_TARGET_MODULES_MAPPING)
# leave out; PEFT's tables cover BERT, RoBERTa, DeBERTa, GPT-2, Llama and many more.
LORA_TARGETS = {"distilbert": ["q_lin", "v_lin"]}
IA3_TARGETS = {"distilbert": (["k_lin", "v_lin", "lin2"], ["lin2"])}


@dataclass
class AdapterSetup:
    model: nn.Module
    target_modules: list[str]
    feedforward_modules: list[str]
    head_modules: list[str]


def check_fine_tuning(fine_tuning: FineTuningConfig, runtime: Runtime) -> None:
    """Reject settings that cannot work before anything is loaded."""
    quantization = fine_tuning.quantization
    if quantization is Quantization.NONE:
        return
    if fine_tuning.mergeAdapter:
        raise ConfigError(
            f"fineTuning.mergeAdapter cannot be combined with baseModelQuantization {quantization.value}: "
            "merging an adapter into quantized weights loses precision. Set mergeAdapter to false "
            "(the adapter is saved on its own), or baseModelQuantization to NONE"
        )
    if fine_tuning.method is FineTuningMethod.FULL:
        raise ConfigError(f"baseModelQuantization {quantization.value} needs an adapter method (LORA or IA3), not FULL")
    if runtime.device.type != "cuda":
        raise ConfigError(f"baseModelQuantization {quantization.value} needs a CUDA GPU; this run has none (set it to NONE)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(
            f"baseModelQuantization {quantization.value} needs the bitsandbytes package, which this trainer image lacks"
        )


def load_base_model(base_path: pathlib.Path, labels: list[str], fine_tuning: FineTuningConfig, runtime: Runtime):
    """Load tokenizer and model with a new head for ``labels``; return them and the head's module names."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    kwargs: dict = {}
    if fine_tuning.quantization is not Quantization.NONE:
        # NOTE: the quantized path needs a GPU and bitsandbytes, so it has no test on CPU.
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=fine_tuning.quantization is Quantization.INT8,
            load_in_4bit=fine_tuning.quantization is Quantization.INT4,
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_path)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            base_path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: index for index, label in enumerate(labels)},
            output_loading_info=True,
            **kwargs,
        )
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(f"model.basePath {base_path}: not a Hugging Face model directory that loads for sequence classification: {error}") from error

    # Weights missing from the checkpoint were just initialised: that is the new task head.
    head_modules = sorted({key.split(".")[0] for key in info["missing_keys"]})
    if fine_tuning.quantization is not Quantization.NONE:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    else:
        model = model.to(runtime.device)
    return tokenizer, model, head_modules


def apply_method(model: nn.Module, fine_tuning: FineTuningConfig, head_modules: list[str]) -> AdapterSetup:
    """Wrap ``model`` for the configured method and freeze everything but adapter and head."""
    from peft import IA3Config, LoraConfig, TaskType, get_peft_model

    if fine_tuning.method is FineTuningMethod.FULL:
        for parameter in model.parameters():
            parameter.requires_grad = True
        return AdapterSetup(model, [], [], head_modules)

    model_type = getattr(model.config, "model_type", "unknown")
    available = _linear_module_names(model)
    if fine_tuning.method is FineTuningMethod.LORA:
        field_name = "fineTuning.lora.targetModules"
        targets = fine_tuning.lora.targetModules or _default_lora_targets(model_type, available)
        feedforward: list[str] = []
        _require_modules(targets, available, model_type, field_name)
        peft_config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=fine_tuning.lora.r,
            lora_alpha=fine_tuning.lora.alpha,
            lora_dropout=fine_tuning.lora.dropout,
            target_modules=targets,
            modules_to_save=head_modules,
        )
    else:
        field_name = "fineTuning.ia3.targetModules"
        default_targets, default_feedforward = _default_ia3_modules(model_type, available)
        targets = fine_tuning.ia3.targetModules or default_targets
        feedforward = fine_tuning.ia3.feedforwardModules or ([] if fine_tuning.ia3.targetModules else default_feedforward)
        _require_modules(targets, available, model_type, field_name)
        _require_modules(feedforward, available, model_type, "fineTuning.ia3.feedforwardModules")
        outside = [name for name in feedforward if name not in targets]
        if outside:
            raise ConfigError(f"fineTuning.ia3.feedforwardModules {outside} must also be listed in fineTuning.ia3.targetModules {targets}")
        peft_config = IA3Config(
            task_type=TaskType.SEQ_CLS,
            target_modules=targets,
            feedforward_modules=feedforward,
            modules_to_save=head_modules,
        )
    return AdapterSetup(get_peft_model(model, peft_config), targets, feedforward, head_modules)


class FineTuneTarget:
    """Training target for a sequence classification model, tokenizing batches on the fly."""

    def __init__(self, model: nn.Module, tokenizer, max_length: int, runtime: Runtime) -> None:
        self.model = model
        self._tokenizer = tokenizer
        self._max_length = max_length
        self._runtime = runtime

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = self._tokenizer(texts, truncation=True, max_length=self._max_length, padding=True, return_tensors="pt")
        return {key: value.to(self._runtime.device) for key, value in encoded.items()}

    def loss(self, split: Split, indices: torch.Tensor) -> torch.Tensor:
        texts = [split.inputs[i] for i in indices.tolist()]
        with self._runtime.autocast():
            logits = self.model(**self._encode(texts)).logits
        return nn.functional.cross_entropy(logits.float(), split.targets[indices].to(self._runtime.device))

    @torch.inference_mode()
    def predict(self, split: Split) -> torch.Tensor:
        return predict_logits(self.model, self._tokenizer, list(split.inputs), self._max_length, self._runtime)


@torch.inference_mode()
def predict_logits(model: nn.Module, tokenizer, texts: list[str], max_length: int, runtime: Runtime) -> torch.Tensor:
    """Return the class logits for ``texts``; used for evaluation and to check a reloaded adapter."""
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, len(texts), EVALUATION_BATCH_SIZE):
        batch = texts[start : start + EVALUATION_BATCH_SIZE]
        encoded = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        with runtime.autocast():
            logits = model(**{key: value.to(runtime.device) for key, value in encoded.items()}).logits
        outputs.append(logits.float().cpu())
    model.train(was_training)
    return torch.cat(outputs)


def save_fine_tuned(
    setup: AdapterSetup,
    tokenizer,
    directory: pathlib.Path,
    metadata: dict,
    initial_state: dict[str, torch.Tensor],
) -> tuple[int, str]:
    """Save the adapter (or the full model for FULL) and its metadata; return (tensors saved, artifact format).

    Raises TrainingFailed when the saved weights contain no tensor that training changed,
    because such an adapter would silently behave like the untuned base model.
    """
    directory.mkdir(parents=True, exist_ok=True)
    setup.model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    full = metadata["method"] == FineTuningMethod.FULL.value
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")

    weights = directory / ("model.safetensors" if full else ADAPTER_WEIGHTS_FILE)
    saved = load_file(str(weights)) if weights.is_file() else {}
    changed = _changed_parameters(setup.model, initial_state)
    if not saved or not changed:
        raise TrainingFailed(
            f"the {metadata['method']} weights saved in {weights.name} contain no trained tensors "
            f"({len(saved)} tensors saved, {len(changed)} of {len(initial_state)} trainable tensors changed from their initial values); "
            "check that training ran at least one step and that the target modules are trained"
        )
    return len(saved), "HF_TRANSFORMERS" if full else "PEFT_ADAPTER"


def merge_adapter(base_path: pathlib.Path, adapter_path: pathlib.Path, labels: list[str], target: pathlib.Path) -> None:
    """Merge a saved adapter into a full-precision reload of the base model and save the result."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(
        base_path, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)}, dtype=torch.float32,
    )
    merged = PeftModel.from_pretrained(base, adapter_path).merge_and_unload()
    merged.save_pretrained(target)


def _changed_parameters(model: nn.Module, initial_state: dict[str, torch.Tensor]) -> list[str]:
    parameters = dict(model.named_parameters())
    return [
        name for name, initial in initial_state.items()
        if name in parameters and not torch.equal(parameters[name].detach().cpu(), initial)
    ]


def _linear_module_names(model: nn.Module) -> list[str]:
    names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            names.append(name)
    return names


def _matches(requested: str, module_name: str) -> bool:
    return module_name == requested or module_name.endswith("." + requested)


def _short_names(available: list[str]) -> list[str]:
    """Return the module name suffixes a user can write: the last and the last two name parts."""
    short = set()
    for name in available:
        parts = name.split(".")
        short.add(parts[-1])
        if len(parts) > 1 and not parts[-2].isdigit():
            short.add(".".join(parts[-2:]))
    return sorted(short)


def _require_modules(requested: list[str], available: list[str], model_type: str, field_name: str) -> None:
    missing = [name for name in requested if not any(_matches(name, module) for module in available)]
    if missing:
        raise ConfigError(
            f"{field_name}: modules {missing} not found in the {model_type} model; "
            f"available linear modules: {', '.join(_short_names(available))}"
        )


def _default_lora_targets(model_type: str, available: list[str]) -> list[str]:
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as LORA_MAPPING

    targets = LORA_TARGETS.get(model_type) or LORA_MAPPING.get(model_type)
    if not targets:
        raise ConfigError(
            f"no default LoRA target modules for model type {model_type}; set fineTuning.lora.targetModules "
            f"to some of: {', '.join(_short_names(available))}"
        )
    return list(targets)


def _default_ia3_modules(model_type: str, available: list[str]) -> tuple[list[str], list[str]]:
    from peft.utils import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FEEDFORWARD_MAPPING
    from peft.utils import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGET_MAPPING

    if model_type in IA3_TARGETS:
        targets, feedforward = IA3_TARGETS[model_type]
        return list(targets), list(feedforward)
    targets = TARGET_MAPPING.get(model_type)
    if not targets:
        raise ConfigError(
            f"no default IA3 target modules for model type {model_type}; set fineTuning.ia3.targetModules "
            f"to some of: {', '.join(_short_names(available))}"
        )
    return list(targets), list(FEEDFORWARD_MAPPING.get(model_type, []))


def fine_tuning_metadata(config_task: Task, method: FineTuningMethod, base_uri: str, labels: list[str], setup: AdapterSetup) -> dict:
    return {
        "baseModel": base_uri,
        "method": method.value,
        "task": config_task.value,
        "labels": labels,
        "targetModules": setup.target_modules,
        "feedforwardModules": setup.feedforward_modules,
        "headModules": setup.head_modules,
    }
