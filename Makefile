# The two commands of the README: `make demo` runs irtmon, `make test` runs the tests.
# Both install what they need first (scripts/bootstrap.sh).

.PHONY: demo test bootstrap lint down clean

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/irtmon demo

test: bootstrap
	.venv/bin/python -m pytest

lint: bootstrap
	.venv/bin/ruff check .

down:
	.venv/bin/irtmon stack down

clean: down
	rm -rf .irtmon/test-stacks
