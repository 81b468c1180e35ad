# tvmaniac-refreshd: the two commands are `make demo` and `make test`.

# Debian's own Python: a venv built from it can be run by any user (pyenv's lives under /root).
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test check lint format bench clean man docs completions dist deb

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=25.1"
	$(BIN)/python -m pip install -q -e . --group test --group lint --group docs --group dist
	touch $(STAMP)

MANPAGE := man/tvmaniac-refreshd.1
# Where man(1) looks for a command found in .venv/bin (man-db derives ../share/man from PATH).
VENV_MANPAGE := $(VENV)/share/man/man1/tvmaniac-refreshd.1

$(VENV_MANPAGE): $(MANPAGE) $(STAMP)
	install -D -m 644 $(MANPAGE) $(VENV_MANPAGE)

## install: a virtual environment in .venv with the package, its dev tools and the man page
install: $(STAMP) $(VENV_MANPAGE)

## man: regenerate man/tvmaniac-refreshd.1 from the parser and docs/reference/ (a unit test checks it)
man: $(STAMP)
	$(BIN)/python scripts/manpage.py docs > $(MANPAGE)

## completions: regenerate completions/ from the parser (a unit test checks them; the wheel and
## the .deb ship them)
completions: $(STAMP)
	$(BIN)/python -m tvmaniac_refreshd completion bash > completions/tvmaniac-refreshd.bash
	$(BIN)/python -m tvmaniac_refreshd completion zsh > completions/_tvmaniac-refreshd
	$(BIN)/python -m tvmaniac_refreshd completion fish > completions/tvmaniac-refreshd.fish

## dist: the sdist, then the wheel built from that sdist alone, into dist/; both pass twine --strict
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

## deb: a Debian 12 package (dh-virtualenv) into dist/deb/, checked by lintian
deb: system-deps dist
	PYTHON=$(abspath $(BIN)/python) sh packaging/debian/build.sh dist/deb

## docs: build the documentation site into site/, strict: a broken link or anchor fails
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet

system-deps:
	sh scripts/install-system-deps.sh

## demo: log in, refresh and show status against the local Trakt emulator and a private keyring
demo: system-deps install
	$(BIN)/python -m demo

# The real OAuth2 server the integration tests run (tests/oidc/server.mjs): npm packages per the lock.
tests/oidc/node_modules/.installed: tests/oidc/package-lock.json
	cd tests/oidc && npm ci --no-audit --no-fund && touch node_modules/.installed

## test: install what the tests need, lint, then run the whole suite (CI runs this)
test: system-deps install tests/oidc/node_modules/.installed lint docs
	$(BIN)/python -m pytest

## check: the quick round for contributors: lint and the unit tests, no root, under a minute
check: lint docs
	$(BIN)/python -m pytest -q tests/unit

## lint: ruff and mypy --strict
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: token cold start, refresh, idle daemon, scale and peer libraries; prints a table and
## writes bench/results/bench.json. BENCH_ARGS=--long: a 600 s idle window and 1,000 accounts.
bench: system-deps install
	sh bench/install-deps.sh
	$(BIN)/python -m bench $(BENCH_ARGS)

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis site
