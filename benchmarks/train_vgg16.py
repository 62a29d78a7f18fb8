"""VGG-16 (config D) training throughput and MFU: synthetic batches already on the device, bf16 autocast,
channels_last and torch.compile, after warm-up. With --data, the same model is also fed real JPEGs through
the project's loader (decode, scale-jittered crop, flip on CPU workers; colour shift and mean on the GPU),
and the ratio real / synthetic says whether the input pipeline keeps up.

    python benchmarks/train_vgg16.py                                  # a GPU: batch 256
    python benchmarks/train_vgg16.py --data /path/to/imagenet --workers 16
    python benchmarks/train_vgg16.py --data /path/to/imagenet --workers 4 --decode device   # nvjpeg
    python benchmarks/train_vgg16.py --data DIR --decode cpu,device   # both, one compiled net
    python benchmarks/train_vgg16.py --width 0.0625 --batch 4 --steps 3   # a CPU smoke run
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vgg_lightning.models import build_vgg  # noqa: E402
from vgg_lightning.speed import peak_flops, train_flops_per_image  # noqa: E402


def make_step(net, optimizer, autocast):
    def step(images, labels):
        with autocast:
            loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def timed(step, batches, steps: int, warmup: int, sync) -> float:
    """Seconds for `steps` steps after `warmup` steps; `batches` yields (images, labels) on the device."""
    for images, labels in itertools.islice(batches, warmup):
        step(images, labels)
    sync()
    start = time.perf_counter()
    for images, labels in itertools.islice(batches, steps):
        step(images, labels)
    sync()
    return time.perf_counter() - start


def real_batches(args, device, decode: str):
    """The project's training batches on `device`: decoded by the loader's workers (`--decode cpu`) or by
    nvjpeg on the GPU (`--decode device`), then colour-shifted and normalised there, as in training."""
    from vgg_lightning.data import ImageNetDataModule
    from vgg_lightning.data.device_decode import decode_batch

    data = ImageNetDataModule(
        root=args.data, scale="jitter", batch_size=args.batch, num_workers=args.workers, num_classes=None,
        decode=decode,
    )  # fmt: skip
    data.setup("fit")
    loader = data.train_dataloader()
    while True:  # epoch after epoch (itertools.cycle would keep every batch it has seen)
        for batch in loader:
            if "jpeg" in batch:
                batch = decode_batch(batch, device, data.bad_file)
            batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            batch = data.on_after_batch_transfer(batch, 0)
            yield batch["image"].contiguous(memory_format=torch.channels_last), batch["label"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="D")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--data", help="an image folder (train/<class>/*.JPEG) to also time real data")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--decode", default="cpu", help="where the JPEGs are decoded: cpu, device or cpu,device")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    net = build_vgg(args.config, width=args.width, init="xavier").to(device, memory_format=torch.channels_last)
    if cuda and not args.no_compile:
        net.forward = torch.compile(net.forward)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, fused=cuda or None
    )  # as optim.fused=auto
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)
    step = make_step(net, optimizer, autocast)

    images = torch.randn(args.batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (args.batch,), device=device)
    synthetic = timed(step, itertools.repeat((images, labels)), args.steps, args.warmup, sync)
    rate = args.steps * args.batch / synthetic
    peak = peak_flops(device)
    name = torch.cuda.get_device_name() if cuda else "CPU"
    mfu_value = rate * train_flops_per_image(net) / peak if peak else None
    mfu = f"MFU {100 * mfu_value:.0f}%" if peak else "MFU unknown (no peak for this device)"
    print(f"{name}: VGG-{args.config} width {args.width}, batch {args.batch}, bf16={cuda}, channels_last, "
          f"compile={cuda and not args.no_compile}")  # fmt: skip
    print(f"synthetic: {rate:.1f} images/s, {mfu}")
    if cuda:
        print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    result = {"device": name, "batch": args.batch, "images_per_s": rate, "mfu": mfu_value, "real": {}}
    for decode in args.decode.split(",") if args.data else ():
        batches = real_batches(args, device, decode)
        try:
            real = timed(step, batches, args.steps, args.warmup, sync)
        finally:
            batches.close()  # stops the loader's workers
        real_rate = args.steps * args.batch / real
        result["real"][decode] = real_rate
        print(f"real JPEGs ({args.workers} workers, decoded on the {decode}): {real_rate:.1f} images/s = "
              f"{real_rate / rate:.2f}x synthetic")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
