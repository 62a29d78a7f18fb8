"""Data parallelism tuned for VGG: Lightning's DDPStrategy with gradient buckets sized for VGG's head, gradients
kept as views into the buckets, and DDP's static graph wherever the step allows it. `register()` makes it
Lightning's "ddp", so that trainer=ddp, trainer.strategy=ddp and a multi-device `auto` all get it."""

from __future__ import annotations

from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

from ..compat import ddp_options

# VGG-16's gradients in fp32, in the order backward makes them: fc8 16 MB and fc7 67 MB, fc6 411 MB, the 13
# convs 59 MB. Buckets of 100 MB all-reduce fc8+fc7 together while fc6's gradient is computed, fc6's alone
# while the convs' backward (most of the step's work) runs, and the convs' together: 3 all-reduces of high
# bandwidth where DDP's default 25 MB makes 6, and torch.compile's DDP optimiser cuts the graph at each one.
BUCKET_MB = 100


class VGGDDPStrategy(DDPStrategy):
    """`gradient_as_bucket_view`: each gradient is a view into its all-reduce bucket, so no step copies the
    gradients (fc6's alone is 411 MB) into the buckets and back, and they take no memory of their own.
    `static_graph`: every step uses every parameter the same way (VGG has no branches), so DDP can skip its
    per-step bookkeeping; it is turned off when the trainer accumulates micro-batches (data.max_device_batch),
    whose `no_sync` backward passes DDP's static graph miscounts (pytorch/pytorch#187732)."""

    def __init__(
        self, *args, bucket_cap_mb: float = BUCKET_MB, gradient_as_bucket_view: bool = True,
        static_graph: bool = True, **kwargs,
    ) -> None:  # fmt: skip
        super().__init__(*args, bucket_cap_mb=bucket_cap_mb, gradient_as_bucket_view=gradient_as_bucket_view, **kwargs)
        self.static_graph = static_graph

    def configure_ddp(self) -> None:
        # here, at fit's start, the trainer's accumulation is known (tasks.train sets it after the trainer is built)
        accumulating = self.lightning_module.trainer.accumulate_grad_batches > 1
        ddp_options(self)["static_graph"] = self.static_graph and not accumulating
        super().configure_ddp()


def register() -> None:
    """Lightning's "ddp" (what its `auto` picks for several devices) becomes VGGDDPStrategy, started as before."""
    StrategyRegistry.register(
        "ddp", VGGDDPStrategy, description="DDP with VGG's buckets (vgg_lightning.training.ddp)", override=True,
        start_method="popen",
    )  # fmt: skip
