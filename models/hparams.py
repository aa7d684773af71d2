"""Typed hyper-parameters of backbones and transfer methods (no torch here).

Each backbone and each transfer method is paired with one config class in its own file, as
HuggingFace pairs XxxConfig with XxxModel: `MMoEConfig` in models/backbones/mmoe.py,
`CrossDistilConfig` in models/transfer/crossdistil.py. A class declares every hyper-parameter
with its type and default; the defaults equal the module's constructor defaults
(tests/models/test_params_backbones.py and tests/models/transfer/test_params_transfers.py keep
the two equal). A `model.backbone` / `model.transfer` block is {"name": ..., hyper-parameters};
`check_block` validates one against its class:
- an unknown key is refused with the list of known ones;
- types are strict: a switch given as the string "False" (a typo in a trigger form or --set)
  or a number given as "0.5" is refused rather than read as true or parsed; an int is accepted
  for a float, and a tuple for a list.

The documented configs (`DOCUMENTED_CONFIGS` of models.backbones and models.transfer, which
params.yaml writes as its active block and commented alternatives) come from these classes: a
method's block is its name and its class defaults (a None default is data-dependent, filled from
the data or the spec, and not written); an ablation is the method's name and its `ablations`
switches. `params_yaml_lines` renders the commented alternatives as params.yaml holds them.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Strict, StrictInt, ValidationError

from core.config import ConfigError, describe_errors

# Layer widths: a list (or tuple) of ints, each strictly an int.
Widths = Annotated[list[StrictInt], Strict(False)]


@dataclass(frozen=True)
class Ablation:
    """A documented variant of a method: the switches it sets on top of the class defaults."""

    switches: dict[str, Any]
    note: str = ""


class HParams(BaseModel):
    """Base of the config classes: frozen, unknown keys refused, strict types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    kind: ClassVar[str] = ""        # "backbone" or "transfer" (the params key is model.<kind>)
    name: ClassVar[str] = ""        # the registry name, the block's "name"
    note: ClassVar[str] = ""        # the comment params.yaml writes after the documented block
    ablations: ClassVar[dict[str, Ablation]] = {}   # documented name -> switches (transfer methods)

    @classmethod
    def check_block(cls, block: Mapping[str, Any], prefix: str = "") -> "HParams":
        """Validate a block (its "name", if present, must be this class's); ConfigError on any
        unknown key or badly typed value, naming the known keys or the expected type. prefix
        names the block's place in params ("model.backbone") in the message."""
        hparams = {k: v for k, v in dict(block).items() if k != "name"}
        label = f"{cls.kind} {cls.name!r}"
        if block.get("name", cls.name) != cls.name:
            raise ConfigError(f"{prefix or label}: block names {block.get('name')!r}, expected {cls.name!r}")
        try:
            return cls.model_validate(hparams)
        except ValidationError as exc:
            raise ConfigError(f"{label}: bad hyper-parameters: {describe_errors(exc, prefix, cls)}") from None

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """{name: default} of every hyper-parameter, in declaration order."""
        return {k: copy.deepcopy(f.default) for k, f in cls.model_fields.items()}

    @classmethod
    def documented(cls) -> dict[str, Any]:
        """The method's documented block: its name and every default that is not None."""
        return {"name": cls.name, **{k: v for k, v in cls.defaults().items() if v is not None}}

    @classmethod
    def documented_ablations(cls) -> dict[str, dict[str, Any]]:
        return {key: {"name": cls.name, **ab.switches} for key, ab in cls.ablations.items()}


class BackboneConfig(HParams):
    kind: ClassVar[str] = "backbone"


class TransferConfig(HParams):
    kind: ClassVar[str] = "transfer"


def documented_configs(configs: Mapping[str, type[HParams]]) -> dict[str, dict[str, Any]]:
    """Each method's documented block followed by its ablations, in registry order."""
    out: dict[str, dict[str, Any]] = {}
    for name, cls in configs.items():
        out[name] = cls.documented()
        out.update(cls.documented_ablations())
    return out


def flow(block: Mapping[str, Any]) -> str:
    """A block as one line of flow-style YAML: {name: mmoe, num_experts: 4, expert_hidden: [64]}."""
    return yaml.safe_dump(dict(block), default_flow_style=True, sort_keys=False, width=1 << 16).strip()


def params_yaml_lines(configs: Mapping[str, type[HParams]], active: str, indent: str = "  ") -> list[str]:
    """The commented alternatives params.yaml writes after its active `model.<kind>` block: one
    line per documented config except the active one, with its note."""
    entries: list[tuple[str, str]] = []
    for cls in configs.values():
        entries.append((flow(cls.documented()), cls.note))
        for ab in cls.ablations.values():
            entries.append((flow({"name": cls.name, **ab.switches}), ab.note))
    kind = next(iter(configs.values())).kind
    active_line = flow(configs[active].documented())
    lines, width = [], max((len(f) for f, note in entries if note and len(f) <= 64), default=0)
    for text, note in entries:
        if text == active_line:
            continue
        line = f"{indent}# {kind}: {text}"
        if note:
            line = f"{line:<{len(indent) + len(kind) + 4 + width}}  # {note}"
        lines.append(line)
    return lines
