"""Reading a config file: TOML → typed model, with every error as `file:line: key.path: message`."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path as FsPath

from pydantic import ValidationError

from tidegate.config.errors import ConfigError
from tidegate.config.locate import Path, line_of
from tidegate.config.model import Config


def key_path(loc: Path) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _references(cfg: Config) -> list[tuple[Path, str]]:
    known = {p.name for p in cfg.pools}
    found: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for i, p in enumerate(cfg.pools):
        if p.name in seen:
            found.append((("pools", i, "name"), f"a pool named {p.name!r} exists already"))
        seen.add(p.name)

    def need(pool: str | None, where: Path) -> None:
        if pool is not None and pool not in known:
            found.append((where, f"unknown pool {pool!r}"))

    for i, h in enumerate(cfg.http):
        need(h.pool, ("http", i, "pool"))
        for j, r in enumerate(h.routes):
            need(r.pool, ("http", i, "routes", j, "pool"))
    for i, t in enumerate(cfg.tcp):
        need(t.pool, ("tcp", i, "pool"))
    if cfg.dns:
        zone = cfg.dns.zone.lower()
        names: set[str] = set()
        for i, rec in enumerate(cfg.dns.records):
            need(rec.pool, ("dns", "records", i, "pool"))
            name = rec.name.lower()
            if name != zone and not name.endswith("." + zone):
                found.append(
                    (("dns", "records", i, "name"), f"{rec.name} is outside the zone {cfg.dns.zone}")
                )
            elif name in names:
                found.append((("dns", "records", i, "name"), f"{rec.name} is listed twice"))
            names.add(name)
    if cfg.lvs:
        need(cfg.lvs.pool, ("lvs", "pool"))
    return found


def parse_config(text: str, filename: str = "<config>") -> Config:
    """Validate TOML text; raise ConfigError naming file, line and key for each problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "... (at line N, column M)"; keep its words, put the line in front.
        msg = str(exc)
        line = None
        if "(at line " in msg:
            tail = msg.rsplit("(at line ", 1)[1]
            line = int(tail.split(",", 1)[0])
            msg = msg.rsplit(" (at line ", 1)[0]
        raise ConfigError([(filename, line, "", f"not valid TOML: {msg}")]) from None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc: Path = tuple(err["loc"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            problems.append((filename, line_of(text, loc), key_path(loc), msg))
        problems.sort(key=lambda p: p[1] or 0)
        raise ConfigError(problems) from None
    refs = _references(cfg)
    if refs:
        raise ConfigError(
            sorted(
                ((filename, line_of(text, loc), key_path(loc), m) for loc, m in refs), key=lambda p: p[1] or 0
            )
        )
    return cfg


# A check of the files a valid config names (certificates, …): the key path of each problem and
# what is wrong. Layers above config supply them (http/tls.py), so this layer reads no certificate.
FileCheck = Callable[[Config], list[tuple[Path, str]]]


def load_config(path: str | FsPath, checks: Sequence[FileCheck] = ()) -> Config:
    """The config in `path`, validated, and then checked by `checks`; ConfigError naming file,
    line and key for every problem."""
    p = FsPath(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([(str(p), None, "", f"cannot read: {exc.strerror}")]) from None
    cfg = parse_config(text, str(p))
    problems = [(loc, msg) for check in checks for loc, msg in check(cfg)]
    if problems:
        raise ConfigError(
            sorted(
                ((str(p), line_of(text, loc), key_path(loc), m) for loc, m in problems),
                key=lambda x: x[1] or 0,
            )
        )
    return cfg
