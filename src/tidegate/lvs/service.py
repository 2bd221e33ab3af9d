"""The [lvs] section as a service of the runtime: one VIP, one pool, one engine.

`userspace` runs the packet-socket director (userspace.py); `ipvs` programs the kernel's IPVS
(ipvs_engine.py). Either way the pool is the control plane: health checks move real servers down
and up, the admin API quiesces one by setting its weight to 0 (no new connections; existing ones
continue, since the connection table holds them), and `connections` of an instance in
GET /api/pools is its active (ESTABLISHED) connection count, which reaches 0 once the quiesced
server's connections are over. An engine that cannot run here says why and the process exits 2
at start; on a reload, `check_section` runs the same checks first, so a reload to an [lvs] that
cannot run is refused and the running director is left as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from tidegate.balancing.pool import Pool
from tidegate.config.model import Config, LvsConfig, split_address
from tidegate.lvs.conntable import ConnTable, RsStats
from tidegate.lvs.director import Mode
from tidegate.lvs.ipvs_engine import IpvsEngine, IpvsUnavailable, probe
from tidegate.lvs.metrics import LvsCollector
from tidegate.lvs.tcp_state import Timeouts
from tidegate.lvs.userspace import EngineError, UserspaceEngine, preflight
from tidegate.service import Host, SectionError

log = logging.getLogger("tidegate.lvs")
# Lifecycle lines scripts wait for ("tidegate: ready"): the process log, logger "tidegate".
announce = logging.getLogger("tidegate")


def timeouts_of(cfg: LvsConfig) -> Timeouts:
    t = cfg.timeouts
    return Timeouts(
        established=t.established,
        syn_recv=t.syn_recv,
        fin_wait=t.fin_wait,
        time_wait=t.time_wait,
        close=t.close,
        close_wait=t.close_wait,
        last_ack=t.last_ack,
        udp=t.udp,
    )


# What a reload can change only by restarting the director (its connection table is lost).
FIXED = ("mode", "engine", "vip", "interface", "protocol")


def _restarts(old: LvsConfig, new: LvsConfig) -> bool:
    return any(getattr(old, k) != getattr(new, k) for k in FIXED)


def check_section(cfg: LvsConfig, running: LvsConfig | None) -> None:
    """Before a reload changes anything: can an engine run with this section here? Only asked
    when the reload would start a director (a new section, or one of FIXED changed)."""
    if running is not None and not _restarts(running, cfg):
        return
    try:
        if cfg.engine == "ipvs":
            probe()
        else:
            preflight(Mode(cfg.mode), split_address(cfg.vip)[0], cfg.interface)
    except (EngineError, IpvsUnavailable) as exc:
        raise SectionError(f"the {cfg.engine} engine cannot run: {exc}") from None


class LvsService:
    name = "lvs"

    def __init__(self, cfg: LvsConfig, runtime: Host) -> None:
        self.cfg = cfg
        self.runtime = runtime
        if cfg.pool not in runtime.pools:
            raise SystemExit(f"tidegate: [lvs] names pool {cfg.pool!r}, which is not defined")
        self.pool = runtime.pools[cfg.pool]
        self.table = ConnTable(timeouts_of(cfg))
        self.engine: UserspaceEngine | IpvsEngine | None = None
        self._collector = runtime.figures("lvs", LvsCollector)
        self._collector.sources.append(self._figures)

    def _make_engine(self) -> UserspaceEngine | IpvsEngine:
        host, port = split_address(self.cfg.vip)
        if self.cfg.engine == "ipvs":
            return IpvsEngine(
                mode=self.cfg.mode, vip=host, port=port, protocol=self.cfg.protocol, pool=self.pool
            )
        return UserspaceEngine(
            mode=self.cfg.mode,
            vip=host,
            port=port,
            protocol=self.cfg.protocol,
            interface=self.cfg.interface,
            pool=self.pool,
            table=self.table,
        )

    async def start(self) -> None:
        try:
            await self._start_engine()
        except EngineError as exc:
            announce.error(f"lvs ({self.cfg.engine} engine): {exc}")
            raise SystemExit(2) from None

    async def _start_engine(self) -> None:
        engine = self._make_engine()
        await engine.start()
        self.engine = engine
        log.info(
            "lvs: %s mode, %s engine, %s on %s, pool %s (%s)",
            self.cfg.mode.upper(),
            self.cfg.engine,
            self.cfg.vip,
            self.cfg.interface,
            self.pool.name,
            self.pool.scheduler_name,
        )
        announce.info(f"lvs listening on {self.cfg.vip}")

    async def reload(self, config: Config, pools: Mapping[str, Pool]) -> None:
        new = config.lvs
        if new is None:
            return
        old = self.cfg
        self.cfg = new
        self.pool = pools[new.pool]
        self.table.timeouts = timeouts_of(new)
        self.table._by_state = self.table.timeouts.by_state()
        if self.engine is None:
            return
        if _restarts(old, new):
            log.warning(
                "lvs: %s changed; restarting the director (its connection table is lost)",
                ", ".join(k for k in FIXED if getattr(old, k) != getattr(new, k)),
            )
            await self.engine.stop(0.0, self._established)
            self.table = ConnTable(timeouts_of(new))
            self.engine = None
            try:
                await self._start_engine()
            except EngineError as exc:  # check_section passed moments ago: the host changed since
                log.error("lvs: the new section did not start (%s); back on the previous one", exc)
                self.cfg = old
                try:
                    await self._start_engine()
                except EngineError as again:
                    log.error("lvs: the previous section did not start again either (%s); no director", again)
            return
        self.engine.set_pool(self.pool)

    def _established(self) -> int:
        return sum(st.active for st in self.table.stats.values())

    async def stop(self, grace: float) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            await engine.stop(grace, self._established)
        if self._figures in self._collector.sources:
            self._collector.sources.remove(self._figures)  # an [lvs] added again attaches anew

    # --- figures ---------------------------------------------------------------------------
    def _per_server(self) -> dict[str, dict[str, int]]:
        if isinstance(self.engine, IpvsEngine):
            return dict(self.engine.stats)
        out: dict[str, dict[str, int]] = {}
        for inst in self.pool:
            out[inst.address] = self.table.stats.get(inst, RsStats()).as_dict()
        return out

    def _dropped(self) -> dict[str, int]:
        if isinstance(self.engine, UserspaceEngine) and self.engine.director is not None:
            return dict(self.engine.director.dropped)
        return {}

    def _figures(self) -> tuple[str, dict[str, dict[str, int]], dict[str, int]]:
        return self.pool.name, self._per_server(), self._dropped()

    def describe_pool(self, pool: str) -> dict[str, object] | None:
        if pool != self.pool.name:
            return None
        out: dict[str, object] = {
            "mode": self.cfg.mode,
            "engine": self.cfg.engine,
            "vip": self.cfg.vip,
            "interface": self.cfg.interface,
            "protocol": self.cfg.protocol,
            "connections": len(self.table),
            # Per real server, like `ipvsadm -L --stats`; the admin API files each under its instance.
            "instances": self._per_server(),
            "dropped": self._dropped(),
        }
        if isinstance(self.engine, UserspaceEngine) and self.engine.director is not None:
            d = self.engine.director
            out["forwarded"] = d.forwarded
            out["replies_rewritten"] = d.replied
            out["sent"] = self.engine.sent
            out["send_errors"] = self.engine.send_errors
        return out


def make_service(lvs_cfg: LvsConfig, runtime: Host) -> LvsService:
    return LvsService(lvs_cfg, runtime)
