"""Step S5: fine-tune one candidate student on a task's logged teacher answers (TRL SFT).

Examples are tokenized here, prompt and answer separately, exactly as the student sees them
when serving (`chat_format.prompt_text` + generated tokens): the loss covers the answer and
its end-of-turn token only. Scratch candidates get a full fine-tune, pretrained ones a LoRA
adapter. Training stops at `max_steps`, the epoch bound or the time budget, whichever first.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from distill.chat_format import (
    CHAT_TEMPLATE,
    answer_message,
    conversation,
    prepare,
    render,
    renders_hermes_tools,
)
from distill.chat_format import stop_token_ids as _stop_ids
from distill.gguf_base import hf_base, is_gguf
from distill.shared_prefix import PrefixMemo, shared_prefix_forward
from gateway.config import TrainingConfig

log = logging.getLogger(__name__)

Method = Literal["auto", "lora", "full"]
# Called once part-way through training with (model, tokenizer); True stops the run there.
Checkpoint = Callable[[Any, Any], bool]
Interrupt = Callable[[], bool]  # asked after every step (it throttles itself); True stops


class Interrupted(Exception):
    """A run stopped for other work (`interrupt`): nothing is saved, nothing registered."""
# LoRA at 1e-3, not the 2e-4 common for long GPU runs: a CPU budget holds 50-100 steps, and
# there 1e-3 learnt more (SmolLM2-135M, 600 s on 1 core, `bench/pretrained_run.py --lr`,
# 2026-12-07): SNIPS intent labels 0.82 -> 0.92 and, on a second split, 0.76 -> 0.99 in
# 99-106 steps; WikiSQL queries 0.16 -> 0.42 (exact) in 50. The schedule still warms up and
# decays it (lr_factor).
DEFAULT_LR = {"scratch": 3e-3, "lora": 1e-3, "full": 2e-5}
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
# Rows per step when `batch_size` is not set. A pretrained candidate on a CPU makes ~50 steps
# of 16 in its 600 s budget, and there smaller, more frequent updates learnt more from the
# same compute (SmolLM2-135M LoRA at 1e-3, 500 WikiSQL examples, 600 s on 1 core,
# `bench/pretrained_run.py --batch-size`, 2026-12-07): 16 rows 0.42, 8 0.49, 4 0.56-0.58,
# 2 0.55 exact. Scratch models and GPUs make hundreds of steps of 16 in the same budget.
DEFAULT_BATCH = 16
CPU_LORA_BATCH = 4


def trains_lora(base_model: str, method: Method) -> bool:
    """Whether a candidate trains a LoRA adapter: asked to, or `auto` on pretrained weights
    (a scratch model is trained in full)."""
    return method == "lora" or (method == "auto" and not base_model.startswith("scratch:"))


def batch_rows(cfg: TrainingConfig, lora: bool, cuda: bool) -> int:
    """Rows per training step: the configured `batch_size`, else by method and device."""
    if cfg.batch_size:
        return cfg.batch_size
    return CPU_LORA_BATCH if lora and not cuda else DEFAULT_BATCH


@dataclass
class TrainReport:
    steps: int
    epochs: float  # passes over the training examples actually made
    first_loss: float  # loss of the first step
    final_loss: float  # mean loss of the last (up to) 10 steps
    seconds: float  # wall time, model building and saving included
    trainable_params: int
    total_params: int
    method: Literal["lora", "full"]
    base_model: str
    stopped_by: Literal["steps", "time", "epochs", "hopeless"]
    examples: int  # examples trained on
    skipped: int  # examples longer than max_seq_len, left out
    quantized: bool = False  # QLoRA: the base was loaded in 4 bits
    tokens: int = 0  # tokens trained on (steps x batch x mean example length)
    tokens_per_s: float = 0.0  # over the whole run, loading and saving included (S4 reads it)
    cpu_seconds: float = 0.0  # process CPU time over the run: on a shared machine, what it got
    warm_from: str | None = None  # the adapter this run started from (distill.warm_start)
    prefixes_run: int = 0  # shared prompts run (LoRA; fewer than steps where they are reused)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Clock:
    """Wall time against the budget, and the training progress the LR schedule follows."""

    def __init__(self, budget_s: float, total_steps: int = 1) -> None:
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.total_steps = total_steps
        self.steps_began: float | None = None  # when the first step started (loading done)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def expired(self) -> bool:
        return self.elapsed() >= self.budget_s

    def progress(self, step: int) -> float:
        """How far along training is: by steps or by time, whichever is further."""
        return min(1.0, max(step / self.total_steps, self.elapsed() / self.budget_s))

    def steps_share(self, step: int) -> float:
        """How far along the steps are: by steps, or by the time since the first step against
        what the budget left them after loading, whichever is further."""
        share = step / self.total_steps
        if self.steps_began is not None:
            left = self.budget_s - (self.steps_began - self.start)
            ran = time.monotonic() - self.steps_began
            share = max(share, ran / left if left > 0 else 1.0)
        return min(1.0, share)


# Warmup spans this share of the run, which ends at the step bound or the time budget,
# whichever comes first. Counted in steps alone (a twentieth of the epoch bound, up to 50),
# a CPU run of a pretrained candidate spent most of its steps warming up: SmolLM2 on 500
# WikiSQL examples made 50 steps in 600 s, 32 of them warmup.
WARMUP_SHARE = 0.05


def lr_factor(step: int, clock: Clock, warmup: int) -> float:
    """Linear warmup over `warmup` steps or WARMUP_SHARE of the run, whichever ends first,
    then cosine decay to 10% over `clock.progress` (so a run cut short by its time budget
    still ends at a low learning rate)."""
    warm = min(1.0, max((step + 1) / warmup, clock.steps_share(step) / WARMUP_SHARE))
    return warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * clock.progress(step))))


def encode_example(
    example: dict[str, Any], tokenizer: Any, stop_ids: set[int]
) -> dict[str, list[int]]:
    """input_ids and labels of one example: -100 on the prompt, then the answer's ids through
    its stop token (the template's newline after the turn is not learnt)."""
    messages, tools = prepare(example)
    prompt = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                           tokenize=False)
    full = tokenizer.apply_chat_template([*messages, answer_message(example)], tools=tools,
                                         tokenize=False)
    if not full.startswith(prompt):  # e.g. templates that render the last turn differently
        k = next((i for i, (a, b) in enumerate(zip(prompt, full, strict=False)) if a != b),
                 min(len(prompt), len(full)))
        log.warning("chat template renders the prompt differently alone; split at char %d", k)
        prompt = full[:k]
    completion = full[len(prompt):]
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    end = next((i for i, t in enumerate(answer_ids) if t in stop_ids), None)
    answer_ids = [*answer_ids, tokenizer.eos_token_id] if end is None else answer_ids[: end + 1]
    return {"input_ids": prompt_ids + answer_ids, "labels": [-100] * len(prompt_ids) + answer_ids}


def qlora_applies(lora: bool, cuda: bool, bitsandbytes: bool) -> bool:
    """QLoRA (a 4-bit NF4 base under the LoRA adapter) where it can run: LoRA on a CUDA GPU
    with bitsandbytes installed. On a CPU the base stays float32."""
    return lora and cuda and bitsandbytes


def load_base(base_model: str, seed: int, texts: list[str],
              quantize: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) for a candidate: `scratch:<size>` or an HF id / local path.

    Pretrained tokenizers keep their own chat template (what the model was tuned on and what
    vLLM renders for it) when it renders tools and Hermes `<tool_call>` answers, the format
    the answer grammar and parser expect; otherwise (no template, or one that cannot render
    tools, like SmolLM2's) they get CHAT_TEMPLATE, its markers then plain text if new.
    `quantize`: load the base in 4 bits for QLoRA (`qlora_applies`).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if base_model.startswith("scratch:"):
        from distill.scratch import build_scratch

        model, tokenizer = build_scratch(base_model.split(":", 1)[1], texts, seed=seed)  # type: ignore[arg-type]
        return model, tokenizer
    tokenizer = AutoTokenizer.from_pretrained(base_model, local_files_only=True)
    if not renders_hermes_tools(tokenizer):
        tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float32
    if not quantize:
        model = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype,
                                                     local_files_only=True)
        return model, tokenizer
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if bf16 else torch.float16
    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                             bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute)
    model = AutoModelForCausalLM.from_pretrained(base_model, quantization_config=nf4,
                                                 dtype=compute, device_map={"": 0},
                                                 local_files_only=True)
    # Norms in float32, inputs requiring grad; no activation checkpointing (small models).
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False), tokenizer


def make_trainer(model: Any, tokenizer: Any, rows: list[dict[str, list[int]]], *,
                 cfg: TrainingConfig, learning_rate: float, clock: Clock, lora: bool,
                 output_dir: str, seed: int = 0, progress: bool = False,
                 checkpoint: Checkpoint | None = None, checkpoint_at: float = 0.4,
                 checkpoint_epochs: float = 0.0, interrupt: Interrupt | None = None,
                 init_adapter: Path | None = None) -> Any:
    """An SFTTrainer over pre-tokenized rows; its `step_losses` and `hit_time_budget` fill in.
    `init_adapter`: a saved LoRA adapter of the same base to go on training (LoRA only).

    Sets `clock.total_steps`: max_steps or the epoch bound, whichever is fewer steps.
    """
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    batch = min(batch_rows(cfg, lora, cuda), len(rows))
    per_epoch = math.ceil(len(rows) / batch)
    clock.total_steps = max(1, min(cfg.max_steps, math.ceil(cfg.epochs * per_epoch)))
    warmup = max(1, min(50, clock.total_steps // 20))

    class Budget(TrainerCallback):
        checked = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            clock.steps_began = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if clock.expired():
                trainer.hit_time_budget = True
                control.should_training_stop = True
            elif interrupt is not None and interrupt():
                trainer.interrupted = True
                control.should_training_stop = True
            elif (checkpoint is not None and not self.checked
                  and clock.elapsed() >= checkpoint_at * clock.budget_s
                  and state.global_step * batch >= checkpoint_epochs * len(rows)):
                self.checked = True
                side = tokenizer.padding_side  # generation pads left, training right
                try:
                    with torch.no_grad():
                        stop = checkpoint(trainer.model, tokenizer)
                finally:
                    tokenizer.padding_side = side
                    if trainer.model is not None:
                        trainer.model.train()
                if stop:
                    trainer.stopped_hopeless = True
                    control.should_training_stop = True

    class Trainer(SFTTrainer):  # type: ignore[misc]
        step_losses: list[float]
        prefix_memo: PrefixMemo
        hit_time_budget = False
        stopped_hopeless = False
        interrupted = False

        def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
            if self.lr_scheduler is None:
                opt: Any = optimizer or self.optimizer
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                    opt, lambda step: lr_factor(step, clock, warmup))
            return self.lr_scheduler

        def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            # LoRA over a pretrained base: the rows' shared prompt (system, tools, schema) is
            # run without gradients once for every `prefix_reuse_steps` batches
            # (distill.shared_prefix).
            shared = shared_prefix_forward(model, inputs, num_items_in_batch,
                                           self.prefix_memo) \
                if lora and model.training else None
            if shared is not None:
                loss = (shared.loss, shared) if return_outputs else shared.loss
            else:
                loss = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            if model.training:
                value = loss[0] if isinstance(loss, tuple) else loss
                self.step_losses.append(float(value.detach()))
            return loss

    args = SFTConfig(
        output_dir=output_dir, max_steps=clock.total_steps, per_device_train_batch_size=batch,
        gradient_accumulation_steps=1, learning_rate=learning_rate, weight_decay=0.0,
        max_length=cfg.max_seq_len, seed=seed, data_seed=seed,
        # On a CPU float32: bf16 autocast was slower for SmolLM2-135M LoRA even on an
        # AVX512-BF16 EPYC (36 s vs 27 s a step, batch 16 x 500 tokens), despite 4x matmuls;
        # on one without (Zen 3) bf16 matmuls run at a tenth of float32's (5.6 vs 51 GFLOPS).
        bf16=cuda and torch.cuda.is_bf16_supported() and lora, fp16=False, use_cpu=not cuda,
        save_strategy="no", eval_strategy="no", report_to="none",
        logging_steps=max(1, clock.total_steps // 20), disable_tqdm=not progress,
        log_level="warning", dataloader_num_workers=0, dataloader_pin_memory=cuda,
        **_no_checkpointing(SFTConfig), **_length_grouping(SFTConfig),
    )
    peft_config = None
    if lora and init_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    elif lora:
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **LORA)  # type: ignore[arg-type]
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                      processing_class=tokenizer, peft_config=peft_config, callbacks=[Budget()])
    trainer.step_losses = []
    trainer.prefix_memo = PrefixMemo(reuse=cfg.prefix_reuse_steps)
    if not progress:
        trainer.remove_callback(PrinterCallback)
    return trainer


def _no_checkpointing(config_cls: Any) -> dict[str, Any]:
    # TRL turns activation checkpointing on by default; it only slows small models down.
    # transformers 5.x renamed gradient_checkpointing to activation_checkpointing.
    if "activation_checkpointing" in config_cls.__dataclass_fields__:
        return {"activation_checkpointing": False}
    return {"gradient_checkpointing": False}


def _length_grouping(config_cls: Any) -> dict[str, Any]:
    # Batches of examples of similar length (shuffled in groups of a few batches, the longest
    # batch first): a batch is padded to its longest row, and a task's rows differ in length
    # mostly by their answers. SNIPS JSON, batch 16: 41% of the tokens computed after the
    # shared prompt were padding in random batches (bench/lora_step_time.py --padding).
    # transformers 5.x names it train_sampling_strategy, 4.x group_by_length.
    if "train_sampling_strategy" in config_cls.__dataclass_fields__:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


@contextmanager
def _quiet(progress: bool) -> Iterator[None]:
    """Without `progress`, no bars from dataset preparation, weight loading or saving."""
    if progress:
        yield
        return
    import datasets

    from distill.student import quiet_progress_bars

    was_off = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        with quiet_progress_bars():
            yield
    finally:
        if not was_off:
            datasets.enable_progress_bars()


def _params(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def train_student(
    train: list[dict[str, Any]], *, base_model: str, method: Method = "auto",
    cfg: TrainingConfig, out_dir: Path, seed: int = 0, progress: bool = True,
    checkpoint: Checkpoint | None = None, checkpoint_at: float = 0.4,
    checkpoint_epochs: float = 0.0, interrupt: Interrupt | None = None,
    bases_dir: Path | None = None, init_adapter: Path | None = None,
) -> TrainReport:
    """Train one student and save it (model or PEFT adapter, plus tokenizer) into `out_dir`.

    A `.gguf` base is converted once into a Hugging Face directory under `bases_dir`
    (`distill.gguf_base`); the adapter names that directory as its base.

    `checkpoint(model, tokenizer)` is called once, at the first step past both
    `checkpoint_at` of the time budget and `checkpoint_epochs` passes over the data; if it
    returns True the run stops there (`stopped_by = "hopeless"`), saved as it is.
    `interrupt()` is asked after every step; True stops the run and raises `Interrupted`.
    `init_adapter`: a LoRA adapter of the same base (an earlier run's) the run goes on from.
    `slimgate.json` is not written here: the registry writes it last, once evaluated.
    """
    if not train:
        raise ValueError("no training examples")
    import importlib.util

    import torch
    from transformers import set_seed

    clock = Clock(cfg.time_budget_s)
    cpu_began = time.process_time()
    set_seed(seed)
    scratch = base_model.startswith("scratch:")
    if scratch and method == "lora":
        raise ValueError(f"{base_model} is randomly initialised: LoRA needs pretrained "
                         "weights; use method 'full' or 'auto'")
    lora = trains_lora(base_model, method)
    if init_adapter is not None and not lora:
        raise ValueError(f"only a LoRA run can start from an adapter; {base_model} trains "
                         "in full")
    if not scratch and is_gguf(base_model):
        base_model = str(hf_base(base_model, bases_dir))
    if not scratch and Path(base_model).is_dir():
        base_model = str(Path(base_model).resolve())  # adapter_config.json must find it later
    texts = [render(*conversation(ex)) for ex in train] if scratch else []
    with _quiet(progress):
        quantized = qlora_applies(lora, torch.cuda.is_available(),
                                  importlib.util.find_spec("bitsandbytes") is not None)
        model, tokenizer = load_base(base_model, seed, texts, quantize=quantized)
        stop_ids = _stop_ids(tokenizer, model.generation_config)
        encoded = [encode_example(ex, tokenizer, stop_ids) for ex in train]
        # max_seq_len is a floor, not a cut: a task whose p99 example is longer (big tool
        # schemas) gets room up to the model's context, rather than losing its examples.
        context = getattr(model.config, "max_position_embeddings", None) or cfg.max_seq_len
        lengths = sorted(len(r["input_ids"]) for r in encoded)
        p99 = lengths[int(0.99 * (len(lengths) - 1))]
        limit = min(context, max(cfg.max_seq_len, p99))
        cfg = cfg.model_copy(update={"max_seq_len": limit})  # the trainer must not cut either
        rows = [r for r in encoded if len(r["input_ids"]) <= limit]
        if not rows:
            raise ValueError(f"every example is longer than {limit} tokens")
        lr = cfg.learning_rate or DEFAULT_LR["scratch" if scratch else "lora" if lora else "full"]
        with tempfile.TemporaryDirectory(prefix="slimgate-train-") as tmp:
            trainer = make_trainer(model, tokenizer, rows, cfg=cfg, learning_rate=lr,
                                   clock=clock, lora=lora, output_dir=tmp, seed=seed,
                                   progress=progress, checkpoint=checkpoint,
                                   checkpoint_at=checkpoint_at,
                                   checkpoint_epochs=checkpoint_epochs, interrupt=interrupt,
                                   init_adapter=init_adapter)
            trainer.train()
            if trainer.interrupted:
                raise Interrupted(f"stopped after {trainer.state.global_step} steps, "
                                  f"{clock.elapsed():.0f} s, for other work")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        trainer.model.save_pretrained(out_dir)  # a PeftModel saves only its adapter
        tokenizer.save_pretrained(out_dir)

    steps = trainer.state.global_step
    trainable, total = _params(trainer.model)
    losses = trainer.step_losses or [float("nan")]
    stopped_by: Literal["steps", "time", "epochs", "hopeless"] = "epochs"
    if trainer.stopped_hopeless:
        stopped_by = "hopeless"
    elif trainer.hit_time_budget and steps < clock.total_steps:
        stopped_by = "time"
    elif clock.total_steps == cfg.max_steps:
        stopped_by = "steps"
    seconds = clock.elapsed()
    tokens = round(steps * trainer.args.per_device_train_batch_size
                   * sum(len(r["input_ids"]) for r in rows) / len(rows))
    return TrainReport(
        steps=steps, epochs=round(steps * trainer.args.per_device_train_batch_size / len(rows), 3),
        first_loss=losses[0], final_loss=sum(losses[-10:]) / len(losses[-10:]),
        seconds=round(seconds, 2), trainable_params=trainable, total_params=total,
        method="lora" if lora else "full", base_model=base_model, stopped_by=stopped_by,
        examples=len(rows), skipped=len(encoded) - len(rows), quantized=quantized,
        tokens=tokens, tokens_per_s=round(tokens / max(seconds, 1e-6), 1),
        cpu_seconds=round(time.process_time() - cpu_began, 1),
        warm_from=None if init_adapter is None else str(init_adapter),
        prefixes_run=trainer.prefix_memo.computed,
    )
