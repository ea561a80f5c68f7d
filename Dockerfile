# Hugging Face Spaces (Docker SDK): non-root user 1000, port 7860, caches in $HOME.
# Built and run here by scripts/image-check.sh (podman); figures in docs/benchmarks.md.

# Any image with Python 3.11 and `python3 -m venv`: python:3.11-slim on the Space;
# scripts/image-base.sh builds an equivalent from Debian packages where no image
# registry is reachable.
ARG BASE=python:3.11-slim
FROM ${BASE}

# Where torch and torchvision come from. PyTorch's CPU-only wheels keep ~4 GB of CUDA
# libraries out of the image; where that index is unreachable, pass PyPI (or a mirror
# of it) and get PyPI's build, which pulls the CUDA libraries in (never used on a CPU).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Unset on the Space. A local build may hand pip a config naming a mirror and its CA
# (pip reads PIP_CONFIG_FILE from the environment; a build argument is in every RUN's).
ARG PIP_CONFIG_FILE

RUN useradd --create-home --uid 1000 user
ENV HOME=/home/user \
    VIRTUAL_ENV=/home/user/venv \
    PATH=/home/user/venv/bin:$PATH
WORKDIR /home/user/app

# The packages go into the user's own venv, not `pip install --user`: a base whose
# Python is Debian's refuses that (PEP 668), and a venv works on both bases.
# torch/torchvision first, at the versions requirements.txt pins (a +cpu build
# satisfies ==2.14.1), then the rest, which then finds them installed. This layer
# changes only with requirements.txt: settings and code come after it.
USER user
COPY requirements.txt .
RUN python3 -m venv "$VIRTUAL_ENV" \
 && pip install --no-cache-dir --disable-pip-version-check --index-url "$TORCH_INDEX" \
        $(grep -E '^torch(vision)?==' requirements.txt) \
 && pip install --no-cache-dir --disable-pip-version-check -r requirements.txt

# Space variables override these. Three models fit a CPU Space (16 GB) many times over
# (docs/benchmarks.md, "The Space's image"); the budget keeps a fourth demo or a bigger
# model from taking the container past its limit.
ENV PYTHONUNBUFFERED=1 \
    HF_HOME=/home/user/.cache/huggingface \
    HUB_CACHE_DIR=/home/user/.cache/demohub \
    HUB_HOST=0.0.0.0 \
    HUB_PORT=7860 \
    HUB_MAX_MODELS=4 \
    HUB_MEMORY_BUDGET=12G \
    HUB_IDLE_TTL=600 \
    GRADIO_ANALYTICS_ENABLED=False

# The app is root's: the user runs it but cannot change it. What the hub writes
# (placeholders, derived graphs, Hub downloads) goes to $HOME/.cache, temp files to /tmp.
# Byte-compiled here, since the user cannot write __pycache__ at run time.
USER root
COPY . .
RUN python -m compileall -q -x '/(tests|bench)/' . && chmod -R a+rX .
USER user
EXPOSE 7860
CMD ["python", "hub.py"]
