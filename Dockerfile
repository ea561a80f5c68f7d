# Hugging Face Spaces (Docker SDK): non-root user 1000, port 7860, caches in $HOME.
FROM python:3.11-slim

RUN useradd --create-home --uid 1000 user
USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/home/user/.cache/huggingface \
    HUB_CACHE_DIR=/home/user/.cache/demohub \
    HUB_HOST=0.0.0.0 \
    HUB_PORT=7860 \
    HUB_MAX_MODELS=2 \
    HUB_IDLE_TTL=600 \
    GRADIO_ANALYTICS_ENABLED=False
WORKDIR /home/user/app

# CPU-only torch/torchvision first (small image, no CUDA), then the rest:
# requirements.txt pins the same versions, which the +cpu builds satisfy.
COPY --chown=user requirements.txt .
RUN pip install --no-cache-dir --user \
        --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
 && pip install --no-cache-dir --user -r requirements.txt

COPY --chown=user . .
EXPOSE 7860
CMD ["python", "hub.py"]
