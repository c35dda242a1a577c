"""A BiSeNet face parser in PyTorch, written for the tests: the reference that the torch-free
ONNX graph of :mod:`swapline.models.bisenet_graph` must equal. Module names follow the
published checkpoint's state dict."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if cin != cout or stride != 1 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class ResNet18(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for i, (cin, cout, s) in enumerate(widths, 1):
            setattr(self, f"layer{i}", nn.Sequential(Block(cin, cout, s), Block(cout, cout, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        f8 = self.layer2(self.layer1(x))
        f16 = self.layer3(f8)
        return f8, f16, self.layer4(f16)


class Refine(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))


class ContextPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18()
        self.arm16, self.arm32 = Refine(256, 128), Refine(512, 128)
        self.conv_head32, self.conv_head16 = ConvBNReLU(128, 128), ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, k=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f8, f16, f32 = self.resnet(x)
        avg = F.interpolate(self.conv_avg(f32.mean((2, 3), keepdim=True)), f32.shape[2:], mode="nearest")
        up32 = self.conv_head32(F.interpolate(self.arm32(f32) + avg, f16.shape[2:], mode="nearest"))
        up16 = self.conv_head16(F.interpolate(self.arm16(f16) + up32, f8.shape[2:], mode="nearest"))
        return f8, up16, up32


class Fuse(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(256, 256, k=1)
        self.conv1 = nn.Conv2d(256, 64, 1, bias=False)
        self.conv2 = nn.Conv2d(64, 256, 1, bias=False)

    def forward(self, sp: torch.Tensor, cp: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([sp, cp], 1))
        att = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean((2, 3), keepdim=True)))))
        return feat * att + feat


class Head(nn.Module):
    def __init__(self, cin: int, mid: int, classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    def __init__(self, classes: int = 19) -> None:
        super().__init__()
        self.cp, self.ffm = ContextPath(), Fuse()
        self.conv_out = Head(256, 256, classes)
        self.conv_out16, self.conv_out32 = Head(128, 64, classes), Head(128, 64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f8, cp8, _ = self.cp(x)
        return F.interpolate(self.conv_out(self.ffm(f8, cp8)), x.shape[2:], mode="bilinear", align_corners=True)
