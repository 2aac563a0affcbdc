# The venv's python when there is one (the README makes .venv), else python3; PYTHON=... to choose another.
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
WORK ?= tiny-staged-run

.PHONY: staged-run
# build -> SFT -> DPO stage 1 -> DPO stage 2 -> GRPO on the tiny random Qwen2.5-VL, on the CPU (see recipes/README.md)
staged-run:
	PYTHON=$(PYTHON) recipes/staged_run.sh $(WORK)
