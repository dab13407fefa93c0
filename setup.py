"""Package layout only (everything else is in pyproject.toml): the repository keeps its YAML configs in the
top-level ``configs/`` folder, and the wheel ships them inside the package as ``aqa/configs`` so that an
installed aqa (``pip install .``, ``pip install git+...``) runs without a checkout. ``aqa.config.CONFIG_DIR``
finds ``aqa/configs`` when installed and ``configs/`` beside the package in a checkout.

pyproject.toml cannot both discover the packages and map one folder under another name, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["aqa", "aqa.*", "data_prep", "data_prep.*"]), "aqa.configs"],
    package_dir={"aqa.configs": "configs"},
    # train.yaml and one folder per group (experiment, encoder, head, loss, data, trainer, sweep)
    package_data={"aqa.configs": ["*.yaml", "*/*.yaml"]},
)
