"""LaMBO-2's settings, apart from llome.lambo so that the params stage, which checks them, imports pydantic alone."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool

from llome.schema import Model, PositiveFloat, PositiveInt, Probability

Device = Annotated[str, Field(strict=True, pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")]


class LamboSettings(Model):
    """The runner's knobs; defaults are the authors' "reproduce LLOME LaMBO results" values (bbo-bench),
    with the swept ones (num_mutations_per_step 16 or 24, guidance_step_size 0.01 or 0.05) at one choice."""

    num_proposals: PositiveInt = 2000
    batch_size: PositiveInt = 128
    num_steps: PositiveInt = 64
    num_mutations_per_step: PositiveInt = 16
    max_guidance_updates: PositiveInt = 2
    guidance_step_size: PositiveFloat = 0.05
    kl_weight: Probability = 0.0  # LaMBO's loss is kl_weight * KL + (1 - kl_weight) * objective
    feature_attr_temp: PositiveFloat = 1.0
    exclude_initial_solution: StrictBool = False
    resample_edit_positions: StrictBool = True
    max_epochs: PositiveInt = 16  # the first round, from scratch
    retrain_epochs: PositiveInt = 16  # every later round, from the first round's model
    fft_expansion_factor: PositiveInt = 2
    feature_dim: PositiveInt = 128
    embed_dim: PositiveInt = 32
    kernel_size: PositiveInt = 5
    ensemble_size: PositiveInt = 8
    feasibility_task: StrictBool = True
    learning_rate: PositiveFloat = 5e-3
    # 16: mixed precision, the authors' choice, on a GPU; on a CPU the runner trains in fp32 (Lightning 1.9 has no
    # fp16 there), as LLOME's bf16 applies on GPUs only
    precision: Literal[32, 16] = 32
    device: Device = "auto"  # the first CUDA GPU the LaMBO environment's torch sees, else the CPU
    threads: PositiveInt | None = None

    def runner_settings(self) -> dict:
        return self.model_dump(exclude={"num_proposals"})
