# wattflow — the two commands:
#   make run    stack up, setup, worker running, simulator feeding it, where to look
#   make test   stack up, ruff, mypy on the pure core, unit + agent + integration tests
PY := .venv/bin/python

.PHONY: run test venv stack setup worker down status lint bench clean

venv:
	@scripts/bootstrap.sh

run: venv
	$(PY) -m app.devrun

test: venv
	scripts/test.sh

stack: venv
	$(PY) -m app.stack up

setup: stack
	$(PY) -m app.setup

status: venv
	@$(PY) -m app.stack status
	@$(PY) -m app.devrun --status

down: venv
	-$(PY) -m app.devrun --stop
	$(PY) -m app.stack down

lint: venv
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: venv setup
	$(PY) -m bench --quick

clean: down
	rm -rf var
