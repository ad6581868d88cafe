# The two commands of the README: `make demo` runs irtmon, `make test` runs the tests.
# Both install what they need first (scripts/bootstrap.sh).

.PHONY: demo test bootstrap lint down clean

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/irtmon demo

# The suite in PYTEST_WORKERS processes (pytest-xdist): each module runs whole in one of them
# (tests/conftest.py groups them, slowest first); a process that runs integration tests starts
# its own Kafka and PostgreSQL. PYTEST_WORKERS=0 runs everything in this one process. The 20
# slowest tests are listed at the end, to keep CI's time in view.
PYTEST_WORKERS ?= 2

test: bootstrap
	.venv/bin/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20

lint: bootstrap
	.venv/bin/ruff check .

down:
	.venv/bin/irtmon stack down

clean: down
	rm -rf .irtmon/test-stacks
