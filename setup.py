"""espnet-supernet: train one ASR supernet with ESPnet, deploy many model sizes."""

from setuptools import find_packages, setup

setup(
    name="espnet_supernet",
    version="0.1.0",
    description="Supernet (train once, deploy many) extensions and recipes for ESPnet ASR",
    packages=find_packages(include=["espnet_supernet", "espnet_supernet.*"]),
    python_requires=">=3.10",
    install_requires=[
        "espnet==202511",
        "torch==2.9.1",
        "torchaudio==2.9.1",
        "sentencepiece",
        "kaldiio",
        "soundfile",
        "jiwer",
    ],
    extras_require={"train": ["tensorboard", "matplotlib"], "export": ["onnx", "onnxruntime"],
                    "test": ["pytest", "pytest-xdist"]},
)
