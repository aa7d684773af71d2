"""dvc.yaml declares what each step reads: its params blocks, its code and the dataset spec.

Every stage of dvc.yaml runs one pipeline step (`mtrec <step>`, mtrec/pipeline.py STEPS). DVC
reruns a stage only when something it declares changed, so a block of params.yaml or a module a
step reads without its stage declaring it is a stale result that `dvc repro` will not rebuild;
a declared block the step never reads reruns the stage for nothing. These tests derive the reads
from the code and compare them with the stages DVC itself resolves (`dvc.repo.Repo(...).index`,
with its templating of `${run.*}` from params.yaml):

- code: the step's module and every project module it imports, transitively (imports inside
  functions too; an `importlib.import_module(f"pkg.{name}")` in a function the step reaches
  counts as every module of package pkg), minus the frame every step runs in: core/context.py
  and what it imports (config, layout, spec, ...), which the CLI loads before any step, so it is
  no stage's own dependency (after a change there: `dvc repro -f`). A package __init__.py with
  no code is no read. A stage may name a directory where the step reads every file in it (DVC
  hashes all of it but what .dvcignore excludes: __pycache__).
- params: an AST scan of the functions the step's `run` reaches (calls and references into
  project modules, followed transitively; a class reached counts with all its methods) for
  attributes of a Params value: `<x>.params.<field>`, a name bound to one (`params =
  ctx.params`, tuple unpacking, an argument annotated `Params` or named `params`), and
  `getattr(params, name)` over a literal tuple of names. A Params passed whole to something that
  is not a project function counts as reading every block. Block fields (window, train, ...)
  are params.yaml blocks of the same name; the scalar fields map to run.* and paths.* keys
  (`SCALAR_KEYS`, checked against load_params below). Static rather than instrumented: running
  every step under a recording Params would need a whole ML-100K run and would see only the
  branches that run took (a gate with no champion never reads the champion checks' params).
- the dataset spec features/datasets/${run.dataset}.yaml: a dependency of every stage whose step
  reads `ctx.spec` (its `validation:` and `gate:` blocks also override params' validate and
  gate, see core.config).

How a stage declares them: blocks in `params:`; run.* either in `params:` or interpolated into
the stage's cmd or paths (a new value changes the cmd or the paths, which reruns the stage);
paths.* place the data and artifacts, which dvc.yaml spells out (checked equal to params.yaml).
"""
from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from core.config import Params, load_params
from core.context import STEP_NAMES

REPO = Path(__file__).resolve().parents[1]
FRAME = "core.context"      # the module whose import closure every step runs in
SPEC_DEP = "features/datasets/${run.dataset}.yaml"
SPEC_FILE = "features/datasets/{dataset}.yaml"
RUN = yaml.safe_load((REPO / "params.yaml").read_text())["run"]

# Params' scalar fields and the params.yaml key each comes from (load_params); block fields
# (a dataclass) come from the top-level block of the same name. test_scalar_keys checks both.
SCALAR_KEYS = {"dataset": "run.dataset", "date": "run.date", "model_name": "run.model_name",
               "data_root": "paths.data", "artifacts_root": "paths.artifacts"}
FIELDS = tuple(f.name for f in dataclasses.fields(Params))
ALL_FIELDS = frozenset(FIELDS)


def param_key(field: str) -> str:
    return SCALAR_KEYS.get(field, field)


# ---------------------------------------------------------------------------- the code scanner

def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def _is_params_annotation(node: ast.AST | None) -> bool:
    if node is None:
        return False
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation
        return node.value.split("|")[0].strip().split(".")[-1] == "Params"
    return _dotted(node).split(".")[-1] == "Params"


def _literal_strings(node: ast.AST) -> list[str] | None:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return [e.value for e in node.elts]
    return None


FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


class Project:
    """The Python packages of a checkout (top-level folders with an __init__.py, tests aside),
    read as source: imports, and which Params fields a function and what it reaches read."""

    def __init__(self, root: Path, fields: frozenset[str]):
        self.root, self.fields = root, fields
        self.packages = {p.parent.name for p in root.glob("*/__init__.py") if p.parent.name != "tests"}
        self._trees: dict[str, ast.Module] = {}
        self._imports: dict[str, frozenset[str]] = {}
        self._bindings: dict[str, dict[str, tuple[str, str | None]]] = {}
        self._defs: dict[str, dict[str, ast.AST]] = {}

    # ---- modules and imports

    def file(self, name: str) -> Path | None:
        """The file of project module `name` (a.b -> a/b.py or a/b/__init__.py); None if none."""
        if not name or name.split(".")[0] not in self.packages:
            return None
        base = self.root.joinpath(*name.split("."))
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path
        return None

    def rel(self, name: str) -> str:
        return self.file(name).relative_to(self.root).as_posix()

    def modules_under(self, package: str) -> set[str]:
        folder = self.root.joinpath(*package.split("."))
        out = set()
        for p in folder.rglob("*.py"):
            if "__pycache__" not in p.parts:
                rel = p.relative_to(self.root).with_suffix("")
                out.add(".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts))
        return out

    def tree(self, name: str) -> ast.Module:
        if name not in self._trees:
            path = self.file(name)
            self._trees[name] = ast.parse(path.read_text(), filename=str(path))
        return self._trees[name]

    def _absolute(self, module: str, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = module.split(".")
        if self.file(module).name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])])

    def has_code(self, name: str) -> bool:
        """False for a package's __init__.py that holds nothing but a docstring."""
        body = self.tree(name).body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        return bool(body) or self.file(name).name != "__init__.py"

    def dynamic(self, func: ast.AST) -> set[str]:
        """Modules `importlib.import_module(f"pkg.sub.{name}")` in `func` may load: all of pkg.sub."""
        out = set()
        for node in ast.walk(func):
            if (isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] == "import_module"
                    and node.args and isinstance(node.args[0], ast.JoinedStr) and node.args[0].values
                    and isinstance(node.args[0].values[0], ast.Constant)):
                prefix = str(node.args[0].values[0].value)
                if prefix.endswith(".") and self.file(prefix[:-1]):
                    out |= self.modules_under(prefix[:-1])
        return out

    def imports(self, module: str) -> frozenset[str]:
        """Project modules `module` imports anywhere in its body, parent packages included
        (importing a.b.c runs a/__init__.py and a/b/__init__.py)."""
        if module in self._imports:
            return self._imports[module]
        found: set[str] = set()
        for node in ast.walk(self.tree(module)):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = self._absolute(module, node)
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            for name in names:
                parts = name.split(".")
                found.update(m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if self.file(m))
        found.discard(module)
        self._imports[module] = frozenset(found)
        return self._imports[module]

    def closure(self, *modules: str) -> set[str]:
        """The modules, their parent packages and every project module they import, transitively."""
        seen, todo = set(), [p for m in modules for p in self._parents(m)]
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(self.imports(m) - seen)
        return seen

    def _parents(self, module: str) -> list[str]:
        parts = module.split(".")
        return [m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if self.file(m)]

    def step_modules(self, module: str, qualname: str, frame: set[str]) -> set[str]:
        """What running module.qualname loads beyond the frame: the import closure of its module
        and of the modules the functions it reaches load dynamically; code-free __init__ aside."""
        loaded = {m for _, func, _ in self.reach(module, qualname) for m in self.dynamic(func)}
        return {m for m in self.closure(module, *loaded) - frame if self.has_code(m)}

    # ---- functions and what they reach

    def bindings(self, module: str) -> dict[str, tuple[str, str | None]]:
        """Names `module` binds (imports anywhere in it, top-level defs): name -> (module, attr or None)."""
        if module in self._bindings:
            return self._bindings[module]
        out: dict[str, tuple[str, str | None]] = {}
        for node in ast.walk(self.tree(module)):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if self.file(a.name):
                        out[a.asname or a.name.split(".")[0]] = (a.name if a.asname else a.name.split(".")[0], None)
            elif isinstance(node, ast.ImportFrom):
                base = self._absolute(module, node)
                if self.file(base):
                    for a in node.names:
                        sub = f"{base}.{a.name}"
                        out[a.asname or a.name] = (sub, None) if self.file(sub) else (base, a.name)
        for name in self.definitions(module):
            if "." not in name:
                out[name] = (module, name)
        self._bindings[module] = out
        return out

    def definitions(self, module: str) -> dict[str, ast.AST]:
        """Top-level functions and classes of `module`, and methods as Class.method."""
        if module not in self._defs:
            out: dict[str, ast.AST] = {}
            for node in self.tree(module).body:
                if isinstance(node, (*FUNCS, ast.ClassDef)):
                    out[node.name] = node
                if isinstance(node, ast.ClassDef):
                    out.update({f"{node.name}.{i.name}": i for i in node.body if isinstance(i, FUNCS)})
            self._defs[module] = out
        return self._defs[module]

    def resolve(self, module: str, qualname: str, depth: int = 0) -> tuple[str, str] | None:
        """(module, qualname) where a project function or class is defined, through re-exports."""
        if depth > 8 or not self.file(module):
            return None
        if qualname in self.definitions(module):
            return module, qualname
        head, _, rest = qualname.partition(".")
        target = self.bindings(module).get(head)
        if target and target[1] and target[0] != module:
            return self.resolve(target[0], f"{target[1]}.{rest}" if rest else target[1], depth + 1)
        return None

    def functions(self, module: str, qualname: str) -> list[tuple[ast.AST, str | None]]:
        """The function, or every method of a class: (node, its class name)."""
        node = self.definitions(module)[qualname]
        if isinstance(node, ast.ClassDef):
            return [(i, node.name) for i in node.body if isinstance(i, FUNCS)]
        return [(node, qualname.split(".")[0] if "." in qualname else None)]

    def reach(self, module: str, qualname: str):
        """(module, function node, ParamsReads) for the function and each one it reaches."""
        seen, todo = set(), [(module, qualname, frozenset())]
        while todo:
            key = todo.pop()
            if key in seen:
                continue
            seen.add(key)
            for func, cls in self.functions(key[0], key[1]):
                reads = ParamsReads(self, key[0], func, cls, key[2])
                yield key[0], func, reads
                todo.extend(reads.callees - seen)
                # what it loads by name runs as the caller asks: count every function there
                todo.extend((m, q, frozenset()) for m in self.dynamic(func) for q in self.definitions(m) if "." not in q)

    def params_read(self, module: str, qualname: str) -> set[str]:
        """Params fields module.qualname and every project function it reaches read."""
        return set().union(*(r.fields for _, _, r in self.reach(module, qualname))) & self.fields

    def reads_spec(self, module: str, qualname: str) -> bool:
        """Whether module.qualname or a function it reaches reads a RunContext's spec (ctx.spec)."""
        return any(isinstance(n, ast.Attribute) and n.attr == "spec" and _dotted(n.value) == "ctx"
                   for _, func, _ in self.reach(module, qualname) for n in ast.walk(func))


class ParamsReads(ast.NodeVisitor):
    """The Params fields one function reads, and the project functions it calls or references."""

    def __init__(self, project: Project, module: str, func: ast.AST, class_name: str | None,
                 roots: frozenset[str] = frozenset()):
        self.project, self.module, self.class_name = project, module, class_name
        self.fields: set[str] = set()
        self.callees: set[tuple[str, str, frozenset[str]]] = set()   # (module, qualname, its Params args)
        self.roots: set[str] = set(roots)          # names bound to a Params (the caller passed some)
        self.loops: dict[str, list[str]] = {}      # loop variable -> the literal strings it runs over
        args = func.args
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            if a.arg == "params" or _is_params_annotation(a.annotation):
                self.roots.add(a.arg)
        for _ in range(2):   # twice: `p = params` after `params = ctx.params` in any order
            for node in ast.walk(func):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        self._bind(target, node.value)
                elif isinstance(node, ast.AnnAssign):
                    if node.value is not None:
                        self._bind(node.target, node.value)
                    if _is_params_annotation(node.annotation) and isinstance(node.target, ast.Name):
                        self.roots.add(node.target.id)
                elif isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.target, ast.Name):
                    names = _literal_strings(node.iter)
                    if names is not None:
                        self.loops[node.target.id] = names
        for stmt in func.body:
            self.visit(stmt)
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.visit(default)

    def _bind(self, target: ast.AST, value: ast.AST) -> None:
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
            for t, v in zip(target.elts, value.elts):
                self._bind(t, v)
        elif isinstance(target, ast.Name) and self.is_root(value):
            self.roots.add(target.id)

    def is_root(self, node: ast.AST) -> bool:
        """A Params value: `<x>.params`, a name bound to one, or load_params(...)."""
        if isinstance(node, ast.Attribute) and node.attr == "params":
            return True
        if isinstance(node, ast.Name) and node.id in self.roots:
            return True
        return isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] == "load_params"

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self.is_root(node.value) and node.attr in self.project.fields:
            self.fields.add(node.attr)
            return
        self._reference(node)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        self._reference(node)

    def visit_Call(self, node: ast.Call) -> None:
        if _dotted(node.func) == "getattr" and len(node.args) >= 2 and self.is_root(node.args[0]):
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                self.fields.add(name.value)
            elif isinstance(name, ast.Name) and name.id in self.loops:
                self.fields.update(self.loops[name.id])
            else:
                self.fields.update(self.project.fields)
            return
        passed = [a for a in [*node.args, *(k.value for k in node.keywords)] if self.is_root(a)]
        callee = self._callee(node.func)
        target = callee and self.project.definitions(callee[0])[callee[1]]
        if passed and not isinstance(target, FUNCS):
            # a whole Params handed to code this scan does not follow (asdict, a class, a library)
            self.fields.update(self.project.fields)
        elif passed:   # follow the callee with the parameters that receive it bound to a Params
            a = target.args
            positional = [x.arg for x in [*a.posonlyargs, *a.args]][1 if "." in callee[1] else 0:]
            names = {positional[i] for i, v in enumerate(node.args) if i < len(positional) and self.is_root(v)}
            names |= {k.arg for k in node.keywords if k.arg and self.is_root(k.value)}
            if any(isinstance(v, ast.Starred) for v in node.args) or len(names) < len(passed):
                self.fields.update(self.project.fields)
            self.callees.add((*callee, frozenset(names)))
        self.generic_visit(node)

    def _callee(self, func: ast.AST) -> tuple[str, str] | None:
        dotted = _dotted(func)
        if not dotted:
            return None
        head, _, rest = dotted.partition(".")
        if head in ("self", "cls") and self.class_name and rest and "." not in rest:
            return self.project.resolve(self.module, f"{self.class_name}.{rest}")
        target = self.project.bindings(self.module).get(head)
        if target is None:
            return None
        mod, attr = target
        if attr is None:   # a module: module.function
            return self.project.resolve(mod, rest) if rest and "." not in rest else None
        return self.project.resolve(mod, f"{attr}.{rest}" if rest else attr)

    def _reference(self, node: ast.AST) -> None:
        if isinstance(getattr(node, "ctx", None), ast.Load):
            callee = self._callee(node)
            if callee:
                self.callees.add((*callee, frozenset()))


# ------------------------------------------------------------------------------- the fixtures

@dataclasses.dataclass(frozen=True)
class Reads:
    files: frozenset[str]      # repo-relative .py files
    params: frozenset[str]     # params.yaml keys: blocks, run.*, paths.*
    spec: bool


@pytest.fixture(scope="module")
def steps() -> dict[str, tuple[str, str]]:
    from mtrec.pipeline import STEPS

    return {name: (fn.__module__, fn.__qualname__) for name, fn in STEPS.items()}


@pytest.fixture(scope="module")
def reads(steps) -> dict[str, Reads]:
    project = Project(REPO, ALL_FIELDS)
    frame = project.closure(FRAME)
    out = {}
    for name, (module, qualname) in steps.items():
        files = {project.rel(m) for m in project.step_modules(module, qualname, frame)}
        params = {param_key(f) for f in project.params_read(module, qualname)}
        out[name] = Reads(frozenset(files), frozenset(params), project.reads_spec(module, qualname))
    return out


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    params: frozenset[str]        # declared in params: (params.yaml)
    interpolated: frozenset[str]  # ${...} keys of params.yaml in the cmd, deps and outs
    deps: tuple[str, ...]         # paths, templating resolved
    outs: tuple[str, ...]         # outs, metrics and plots, templating resolved
    raw_deps: tuple[str, ...]     # as written in dvc.yaml


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    from dvc.repo import Repo

    raw = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = {}
    with Repo(str(REPO)) as repo:
        for stage in repo.index.stages:
            declared, deps = set(), []
            for dep in stage.deps:
                if type(dep).__name__ == "ParamsDependency":
                    assert Path(dep.def_path).name == "params.yaml", f"{stage.name}: params from {dep.def_path}"
                    declared.update(dep.params)
                else:
                    deps.append(dep.def_path)
            raw_deps = tuple(next(iter(d)) if isinstance(d, dict) else d for d in raw[stage.name].get("deps", []))
            out[stage.name] = Stage(stage.name, stage.cmd, frozenset(declared),
                                    frozenset(stage.tracked_vars.get("params.yaml", {})), tuple(deps),
                                    tuple(o.def_path for o in stage.outs), raw_deps)
    return out


def _files_in(folder: Path) -> set[str]:
    """Every file DVC hashes for a directory dep (.dvcignore keeps __pycache__ out, see below),
    minus code-free __init__.py files, which the scan does not count either."""
    project = Project(REPO, ALL_FIELDS)
    out = set()
    for p in folder.rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts:
            rel = p.relative_to(REPO)
            if p.name == "__init__.py" and not project.has_code(".".join(rel.parts[:-1])):
                continue
            out.add(rel.as_posix())
    return out


def code_deps(stage: Stage) -> set[str]:
    """The stage's deps inside the project's packages, as files (a directory: every file in it)."""
    packages = Project(REPO, ALL_FIELDS).packages
    files = set()
    for dep in stage.deps:
        if dep.split("/")[0] in packages and dep != SPEC_FILE.format(dataset=RUN["dataset"]):
            files |= _files_in(REPO / dep) if (REPO / dep).is_dir() else {dep}
    return files


def suggest(files: set[str]) -> list[str]:
    """The shortest deps list for these files: a directory where the step reads every file in it."""
    out = set(files)
    for folder in sorted({p for f in files for p in Path(f).parents if p.parts}, key=lambda p: len(p.parts)):
        if _files_in(REPO / folder) <= files:
            out = {f for f in out if not f.startswith(f"{folder.as_posix()}/")} | {folder.as_posix()}
    return sorted(f for f in out if not any(f.startswith(f"{d}/") for d in out))


# ------------------------------------------------------------------------------------ the tests

def test_scalar_keys():
    """SCALAR_KEYS names every scalar field of Params and the key load_params reads it from;
    every other field is a dataclass read from the top-level block of params.yaml of its name."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    hints = typing.get_type_hints(Params)
    blocks = {f for f in FIELDS if dataclasses.is_dataclass(hints[f])}
    assert set(FIELDS) - blocks == set(SCALAR_KEYS), "a new scalar field of Params: name its key in SCALAR_KEYS"
    assert blocks <= set(raw), f"Params blocks missing from params.yaml: {sorted(blocks - set(raw))}"
    base = load_params(REPO / "params.yaml")
    other = {"run.dataset": "synthetic", "run.date": "1998-03-02", "run.model_name": "other",
             "paths.data": "elsewhere-data", "paths.artifacts": "elsewhere-artifacts"}
    for field, key in SCALAR_KEYS.items():
        assert getattr(load_params(REPO / "params.yaml", {key: other[key]}), field) != getattr(base, field), (
            f"{key} does not set Params.{field}")


def test_stages_are_the_steps(stages, steps):
    assert list(stages) == list(steps) == list(STEP_NAMES)
    for name, stage in stages.items():
        assert stage.cmd.split()[:2] == ["mtrec", name], stage.cmd


@pytest.mark.parametrize("name", STEP_NAMES)
def test_params_declared(name, stages, reads):
    """The stage's params: lists exactly the blocks its step reads; each run.* key the step reads
    is interpolated into the stage (cmd or paths) or, failing that, listed."""
    stage, code = stages[name], reads[name]
    blocks_read = {k for k in code.params if "." not in k}
    blocks_declared = {k for k in stage.params if "." not in k}
    assert blocks_declared == blocks_read, (
        f"stage {name}: params: lists blocks {sorted(blocks_declared)}, the step reads {sorted(blocks_read)}")
    assert not {k for k in stage.params if "." in k and not k.startswith("run.")}, (
        f"stage {name}: params: lists parts of blocks, not whole blocks: {sorted(stage.params)}")
    run_read = {k for k in code.params if k.startswith("run.")}
    run_declared = {k for k in stage.params if k.startswith("run.")}
    assert run_read <= run_declared | stage.interpolated, (
        f"stage {name}: the step reads {sorted(run_read - run_declared - stage.interpolated)}, "
        "neither in params: nor in a ${...} of the stage")
    needless = run_declared - (run_read - stage.interpolated)
    assert not needless, (f"stage {name}: params: lists {sorted(needless)}, which the step does not read or "
                          "the stage already interpolates")


@pytest.mark.parametrize("name", STEP_NAMES)
def test_code_deps(name, stages, reads):
    """The stage's code deps are exactly the modules its step imports (minus the frame)."""
    declared, code = code_deps(stages[name]), set(reads[name].files)
    assert declared == code, (
        f"stage {name}: deps name modules the step does not import: {sorted(declared - code)}; "
        f"the step imports undeclared: {sorted(code - declared)}; "
        f"deps for its code: {suggest(code)}")


@pytest.mark.parametrize("name", STEP_NAMES)
def test_spec_dep(name, stages, reads):
    """The dataset spec is a dep of every stage whose step reads it (or the params it overrides)."""
    has = SPEC_DEP in stages[name].raw_deps
    needs = reads[name].spec or bool({"validate", "gate"} & reads[name].params)
    assert has == needs, f"stage {name}: {'missing' if needs else 'needless'} dep {SPEC_DEP}"


def test_directory_deps_skip_bytecode(stages):
    """DVC hashes every file of a directory dep that .dvcignore keeps: not __pycache__, which
    any import rewrites (and another Python version adds to)."""
    from dvc.repo import Repo

    folders = sorted({d for s in stages.values() for d in s.deps if (REPO / d).is_dir() and
                      d.split("/")[0] in Project(REPO, ALL_FIELDS).packages})
    with Repo(str(REPO)) as repo:
        kept = [f for f in folders if not repo.dvcignore.is_ignored(repo.fs, str(REPO / f / "__pycache__"))]
    assert not kept, f".dvcignore lets DVC hash __pycache__ in the deps {kept}"


def test_data_paths_are_the_params_paths(stages):
    """dvc.yaml spells out where the data and artifacts are: under params.yaml's paths.data and
    paths.artifacts, the directories the steps read and write (every dep or out outside the code
    and the spec)."""
    paths = yaml.safe_load((REPO / "params.yaml").read_text())["paths"]
    packages = Project(REPO, ALL_FIELDS).packages
    roots = tuple(f"{paths[k]}/" for k in ("data", "artifacts"))
    for stage in stages.values():
        data = [p for p in (*stage.deps, *stage.outs) if p.split("/")[0] not in packages]
        assert data and all(p.startswith(roots) for p in data), (
            f"stage {stage.name}: paths outside params.yaml paths.data/paths.artifacts ({roots}): {data}")


PROBE = {
    "pkg/__init__.py": "",
    "pkg/conf.py": "class Params: ...\n",
    "pkg/util.py": """
def landing_days(spec, params):
    w = params.window
    return w, params.date

def other(params):
    return params.versioning
""",
    "pkg/plugins/__init__.py": "",
    "pkg/plugins/a.py": "",
    "pkg/plugins/b.py": "import pkg.unused\n",
    "pkg/unused.py": "",
    "pkg/step.py": """
import importlib
from pkg.conf import Params
from pkg import util

def run(ctx):
    spec, params = ctx.spec, ctx.params
    a = params.window.train_days
    helper(ctx.params)
    util.landing_days(spec, params)
    plain(1, cfg=params)
    Holder().go(ctx)
    plugin(ctx.spec.source)
    return ctx.params.model_name

def helper(p: Params):
    return {name: getattr(p, name) for name in ("gate", "export")}

def plain(n, cfg):
    return cfg.validate

class Holder:
    def go(self, ctx):
        return self._inner(ctx.params)

    def _inner(self, params):
        return params.train

def unused(params):
    from pkg import unused
    return params.model

def plugin(name):
    return importlib.import_module(f"pkg.plugins.{name}")
""",
    "pkg/whole.py": """
import dataclasses

def run(ctx):
    return dataclasses.asdict(ctx.params)
""",
}


def test_scanner_sees_the_patterns(tmp_path):
    """The scan on a small project written with each pattern it claims to follow."""
    for rel, text in PROBE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    fields = frozenset({"window", "date", "model_name", "gate", "export", "train", "model", "versioning", "validate"})
    project = Project(tmp_path, fields)
    assert project.params_read("pkg.step", "run") == {"window", "date", "model_name", "gate", "export", "train",
                                                       "validate"}
    assert project.reads_spec("pkg.step", "run")
    assert project.params_read("pkg.whole", "run") == fields
    assert not project.reads_spec("pkg.whole", "run")
    assert project.closure("pkg.step") == {"pkg", "pkg.step", "pkg.conf", "pkg.util", "pkg.unused"}
    # + what run() loads by name; code-free __init__.py files (pkg, pkg.plugins) are no reads
    assert project.step_modules("pkg.step", "run", frame={"pkg.conf"}) == {
        "pkg.step", "pkg.util", "pkg.unused", "pkg.plugins.a", "pkg.plugins.b"}
    assert project.step_modules("pkg.whole", "run", frame=set()) == {"pkg.whole"}
