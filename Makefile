# AutoVoice: `make run` opens the app, `make test` runs the tests; both set up .venv first.
.PHONY: setup run test bench clean

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/autovoice

test: setup
	QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python benchmarks/bench_engine.py

clean:
	rm -rf .venv .pytest_cache
