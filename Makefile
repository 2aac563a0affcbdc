PYTHON ?= python
WORK ?= tiny-staged-run

.PHONY: staged-run
# build -> SFT -> DPO stage 1 -> DPO stage 2 -> GRPO on the tiny random Qwen2.5-VL, on the CPU (see recipes/README.md)
staged-run:
	PYTHON=$(PYTHON) recipes/staged_run.sh $(WORK)
