"""Packaging for super_selfish."""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version() -> str:
    # Read __version__ without importing the package (its dependencies may not be installed yet).
    with open(os.path.join(HERE, "super_selfish", "version.py"), encoding="utf-8") as fh:
        match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', fh.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError("__version__ not found in super_selfish/version.py")
    return match.group(1)


def read_readme() -> str:
    path = os.path.join(HERE, "README.md")
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as fh:
        return fh.read()


# Optional integrations, each imported only when used (super_selfish/extras.py names the extra
# in its error message when one is missing).
EXTRAS = {
    "timm": ["timm>=0.9"],
    "lightning": ["lightning>=2.0"],
    "hf": ["datasets>=2.14"],
    "webdataset": ["webdataset>=0.2.86"],
    "wandb": ["wandb>=0.16"],
    "onnx": ["onnx", "onnxruntime", "onnxscript"],
}

setup(
    name="super_selfish",
    version=read_version(),
    description="Self-supervised learning for PyTorch",
    long_description=read_readme(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["super_selfish", "super_selfish.*"]),
    package_data={"super_selfish.assets": ["*.npz", "*.npy"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "kornia>=0.7",
        "efficientnet-pytorch",
        "elasticdeform",
        "tqdm",
        "colorama",
        "numpy",
        "pillow",
    ],
    extras_require={
        "test": [
            "pytest",
            "pytest-timeout",
            "nbclient",
            "nbformat",
            "ipykernel",
            "matplotlib",
            "pandas",
            "tensorboard",
            "scikit-image",  # the reference for the Lab conversion tests
            "ruff==0.17.6",  # lint and format checks in .ci/run (pinned: output varies by release)
            # the optional integrations are tested with the real libraries
            *EXTRAS["timm"],
            *EXTRAS["lightning"],
            *EXTRAS["hf"],
            *EXTRAS["webdataset"],
            *EXTRAS["wandb"],
            *EXTRAS["onnx"],
        ],
        "viz": ["matplotlib", "tensorboard", "pandas"],
        **EXTRAS,
        "all": sorted(
            {p for packages in EXTRAS.values() for p in packages}
            | {"matplotlib", "tensorboard", "pandas"}
        ),
    },
    entry_points={"console_scripts": ["super-selfish = super_selfish.cli:main"]},
)
