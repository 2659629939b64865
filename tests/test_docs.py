"""The documentation says what exists: commands, options, routes, links, and a short README.

Every `embedlab ...` line in a code block (and every inline `embedlab ...` span) of
README.md and docs/*.md is walked through the real click group: each subcommand must
exist and each `--option` must belong to the (sub)command it follows. Every HTTP route
shown (`GET /api/v1/...`) must be a route of the service's app, every relative link must
point to a file (and heading) that exists, and the README stays within 200 lines.
"""

from __future__ import annotations

import ast
import inspect
import re
import shlex
from pathlib import Path

import click
import embedlab
import embedlab.cli as cli_module
import pytest

from tests.conftest import REPO, SHARED_ARCHIVE

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 200
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)*)`")  # a code span may wrap onto a new line
METHODS = "GET|POST|DELETE|PUT|PATCH"
ROUTE = re.compile(rf"\b((?:{METHODS})(?:/(?:{METHODS}))*)\s+(/[^\s`'\"|,)]*)")
BARE_API_PATH = re.compile(r"(?<![\w./])(/api/v1/[^\s`'\"|,)]*)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def root_group() -> click.Group:
    """The `embedlab` click group (the entry point `embedlab.cli:main` runs it)."""
    group = getattr(cli_module, "cli", None)
    if isinstance(group, click.Group):
        return group
    (group,) = [
        value
        for value in vars(cli_module).values()
        if isinstance(value, click.Group) and "ingest" in value.commands
    ]
    return group


def fenced_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def prose(text: str) -> str:
    return FENCE.sub("", text)


def command_lines(text: str) -> list[str]:
    """`embedlab ...` lines of the code blocks (continuations joined) and inline spans."""
    lines = []
    for block in fenced_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith((".venv/bin/embedlab ", "embedlab ")):
                lines.append(line)
    for span in INLINE.findall(prose(text)):
        span = " ".join(span.split())
        if span.startswith(("embedlab ", ".venv/bin/embedlab ")):
            lines.append(span)
    return lines


def tokens_of(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in prose: words are enough here
        return line.split("#")[0].split()


def option_names(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def takes_value(command: click.Command, name: str) -> bool:
    for param in command.params:
        if isinstance(param, click.Option) and name in param.opts + param.secondary_opts:
            return not (param.is_flag or param.count)
    return False


def problems_of(line: str, root: click.Group) -> list[str]:
    """What in one documented command line the CLI does not have."""
    problems: list[str] = []
    tokens = tokens_of(line)[1:]  # after `embedlab`
    commands: list[click.Command] = [root]
    parents: list[click.Group] = []
    after_pipe = False
    i = 0
    while i < len(tokens):
        token = tokens[i].strip("[]")
        i += 1
        if token == "|":
            after_pipe = True
            continue
        if not token or token in ("...", ".."):
            continue
        pipe, after_pipe = after_pipe, False
        if token.startswith("-") and not re.match(r"-\d", token):
            for option in token.split("|"):
                name = option.split("=")[0]
                for command in commands:
                    if name not in option_names(command):
                        problems.append(f"{line!r}: {command.name} has no option {name}")
            at_group = all(isinstance(c, click.Group) for c in commands)
            name = token.split("=")[0]
            if at_group and "=" not in token and any(takes_value(c, name) for c in commands):
                i += 1  # a global option's value, not a subcommand
            continue
        names = token.split("|")
        if pipe and parents and all(n in p.commands for n in names for p in parents):
            commands = [p.commands[n] for p in parents for n in names]  # `stats | costs`
        elif all(isinstance(c, click.Group) for c in commands):
            found = []
            for command in commands:
                for name in names:
                    sub = command.commands.get(name)
                    if sub is None:
                        problems.append(f"{line!r}: no command {command.name} {name}")
                    else:
                        found.append(sub)
            if not found:
                return problems
            parents, commands = commands, found
        # else: an argument or an option's value
    return problems


def test_every_documented_command_and_option_exists():
    root = root_group()
    seen, problems = 0, []
    for page in PAGES:
        for line in command_lines(page.read_text()):
            seen += 1
            problems += [f"{page.relative_to(REPO)}: {p}" for p in problems_of(line, root)]
    assert seen >= 60, f"only {seen} command lines found: is the parser still reading them?"
    assert not problems, "\n".join(problems)


def test_every_command_and_option_of_the_cli_is_documented():
    """The other way round: nothing the CLI offers is missing from README.md and docs/."""
    text = "\n".join(page.read_text() for page in PAGES)
    readme = README.read_text()
    missing = []

    def visit(command: click.Command, path: list[str]) -> None:
        if path and not re.search(r"embedlab .*\b" + r"\s+".join(path) + r"\b", readme):
            missing.append(f"the README shows no `embedlab {' '.join(path)}`")
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for option in param.opts + param.secondary_opts:
                    if option.startswith("--") and not re.search(rf"{option}(?![\w-])", text):
                        missing.append(f"embedlab {' '.join(path)} {option}")
        for name, sub in getattr(command, "commands", {}).items():
            if not sub.hidden:
                visit(sub, [*path, name])

    visit(root_group(), [])
    assert not missing, "\n".join(missing)


def test_the_checker_refuses_a_made_up_command_or_option():
    root = root_group()
    assert problems_of("embedlab analyze --k 4 --out ./report", root) == []
    assert problems_of("embedlab --store DIR --wait 600 ingest csv x.csv --dry-run", root) == []
    assert problems_of("embedlab --server URL stats | neighbors ... | costs", root) == []
    assert problems_of("embedlab analyze --k 4 --made-up-option 3", root)
    assert problems_of("embedlab analyse --k 4", root)  # no such command
    assert problems_of("embedlab ingest csv|tsv posts.tsv", root)  # one alternative is wrong
    assert problems_of("embedlab stats --store DIR", root)  # a global option after the command
    assert problems_of("embedlab neighbors --id X --json | --tsv", root)
    block = "```\nembedlab compare --space A \\\n    [--made-up N]\n```\n"
    (line,) = command_lines(block)
    assert problems_of(line, root)


def test_every_inline_option_is_an_option_of_a_command_or_of_a_bench_script():
    root = root_group()
    everything: set[str] = set()

    def collect(command: click.Command) -> None:
        everything.update(option_names(command))
        for sub in getattr(command, "commands", {}).values():
            collect(sub)

    collect(root)
    bench = "\n".join(p.read_text() for p in (REPO / "bench").glob("*.py"))
    unknown = []
    for page in PAGES:
        for span in INLINE.findall(prose(page.read_text())):
            for name in re.findall(r"^(--[a-z][a-z0-9-]*)", span.strip()):
                if name not in everything and f'"{name}"' not in bench:
                    unknown.append(f"{page.relative_to(REPO)}: {name}")
    assert not unknown, "\n".join(unknown)


def app_routes(tmp_path: Path) -> dict[str, set[str]]:
    from embedlab.service.app import create_app

    with embedlab.open(tmp_path / "store", quiet=True) as lab:
        app = create_app(lab)
        routes: dict[str, set[str]] = {}
        for route in app.routes:
            path = re.sub(r"\{[^}]*\}", "{}", route.path)
            routes.setdefault(path, set()).update(getattr(route, "methods", None) or ())
    return routes


def documented_routes(text: str) -> list[tuple[str | None, str]]:
    shown: list[tuple[str | None, str]] = []
    spans = set()
    for match in ROUTE.finditer(text):
        spans.add(match.start(2))
        for method in match.group(1).split("/"):
            shown.append((method, match.group(2)))
    for match in BARE_API_PATH.finditer(text):
        if match.start(1) not in spans:
            shown.append((None, match.group(1)))
    out = []
    for method, path in shown:
        path = path.split("?")[0].rstrip(".:;")
        if "[" in path:  # `/api/v1/analyses[/{id}]`: both forms
            out.append((method, re.sub(r"\[.*?\]", "", path)))
            path = path.replace("[", "").replace("]", "")
        out.append((method, path))
    return out


def missing_routes(text: str, routes: dict[str, set[str]]) -> tuple[int, list[str]]:
    shown = documented_routes(text)
    missing = []
    for method, path in shown:
        key = re.sub(r"\{[^}]*\}", "{}", path)
        if key not in routes or (method and method not in routes[key]):
            missing.append(f"{method or '(any)'} {path}")
    return len(shown), missing


def test_every_documented_route_exists_in_the_service(tmp_path):
    routes = app_routes(tmp_path)
    seen, missing = 0, []
    for page in PAGES:
        count, absent = missing_routes(page.read_text(), routes)
        seen += count
        missing += [f"{page.relative_to(REPO)}: {route}" for route in absent]
    assert seen >= 40, f"only {seen} routes found: is the parser still reading them?"
    assert not missing, "\n".join(missing)


def test_every_route_of_the_api_is_documented(tmp_path):
    from embedlab.service.app import create_app

    with embedlab.open(tmp_path / "store", quiet=True) as lab:
        app = create_app(lab)
        public = {
            (method, re.sub(r"\{[^}]*\}", "{}", route.path))
            for route in app.routes
            if route.path.startswith("/api/") and getattr(route, "include_in_schema", True)
            for method in getattr(route, "methods", None) or ()
            if method != "HEAD"
        }
    documented = {
        (method, re.sub(r"\{[^}]*\}", "{}", path))
        for page in PAGES
        for method, path in documented_routes(page.read_text())
    }
    assert len(public) >= 30
    undocumented = sorted(f"{m} {p}" for m, p in public - documented)
    assert not undocumented, "\n".join(undocumented)


def test_the_route_checker_refuses_a_made_up_route(tmp_path):
    routes = app_routes(tmp_path)
    text = "`GET /api/v1/analyses[/{id}]`, `GET/DELETE /api/v1/jobs/{id}`, `/api/v1/costs`"
    assert missing_routes(text, routes) == (5, [])
    assert missing_routes("`POST /api/v1/made-up`", routes) == (1, ["POST /api/v1/made-up"])
    assert missing_routes("`POST /api/v1/stats`", routes)[1]  # the route, not that method
    assert missing_routes("see `/api/v1/nowhere/{id}`", routes)[1]


def heading_slugs(text: str) -> set[str]:
    slugs = set()
    for heading in re.findall(r"^#+\s+(.*)$", prose(text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


def shown(page: Path) -> str:
    return str(page.relative_to(REPO)) if page.is_relative_to(REPO) else page.name


def broken_links(page: Path) -> list[str]:
    broken = []
    text = page.read_text()
    for target in LINK.findall(prose(text)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{shown(page)}: {target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in heading_slugs(file.read_text()):
            broken.append(f"{shown(page)}: {target} (no such heading)")
    return broken


def test_every_relative_link_points_to_an_existing_file():
    links = LINK.findall(prose(README.read_text()))
    assert len(links) >= 10
    problems = [p for page in PAGES for p in broken_links(page)]
    assert not problems, "\n".join(problems)


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other page (`with code`)\n\ntext\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n[ok](other.md#other-page-with-code), [ok](#title), "
        "[no file](missing.md), [no heading](other.md#no-such), [no heading](#nowhere)\n"
    )
    found = broken_links(page)
    assert len(found) == 3 and all("no" in f for f in found), found


def test_the_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
    top = "\n".join(lines[:12])
    assert "make demo" in top and "make test" in top
    assert ".venv/bin/embedlab" in top and "source .venv/bin/activate" in top.replace("\n", " ")
    makefile = (REPO / "Makefile").read_text()
    (store,) = re.findall(r"^STORE \?= (\S+)", makefile, re.M)
    (option,) = [p for p in root_group().params if "--store" in getattr(p, "opts", ())]
    assert option.default == store and f"`{store}`" in top


def test_every_docs_page_is_linked_from_the_readme():
    readme = README.read_text()
    for page in sorted((REPO / "docs").iterdir()):
        if page.suffix in (".md", ".ipynb"):
            assert f"](docs/{page.name})" in readme, f"README.md does not link {page.name}"


def test_the_readme_python_example_calls_what_exists_offline():
    """The notebook lines run as written on a fresh clone: real names and arguments, the
    local model and the local archive (so no download, no key)."""
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)]
    tree = ast.parse(block)
    Lab = embedlab.Lab  # noqa: N806 - the class the example's `lab` is

    names = {
        target.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    def value(node: ast.expr) -> object:
        if isinstance(node, ast.Name):
            return names.get(node.id)
        return ast.literal_eval(node)

    calls = 0
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        if not isinstance(owner, ast.Name) or owner.id not in ("embedlab", "lab"):
            continue
        target = getattr(embedlab if owner.id == "embedlab" else Lab, node.func.attr)
        args = [value(a) for a in node.args]
        kwargs = {k.arg: value(k.value) for k in node.keywords if k.arg}
        this = [None] if owner.id == "lab" else []
        bound = inspect.signature(target).bind(*this, *args, **kwargs).arguments
        calls += 1
        if node.func.attr == "ingest_newsgroups":
            provider = bound.get("provider", bound.get("options", {}).get("provider"))
            assert provider == "local"
            assert (REPO / bound["source"]).resolve() == SHARED_ARCHIVE.resolve()
    assert calls >= 3


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_blocks_are_closed(page):
    assert page.read_text().count("```") % 2 == 0
