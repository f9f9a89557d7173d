"""Device profiles. They mimic a device only by what the runtime can control: the
number of onnxruntime threads and the memory budget the SpecMemo planner fits a request
into. They do not emulate a slower CPU or less memory bandwidth: run `edgeseq bench
--profile pi4` on the device itself for its real speed. Shared by the demo and bench."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    threads: int                    # onnxruntime intra-op threads (0: all cores)
    memory_budget_mb: float | None  # None: no budget, nothing is planned
    description: str

    def to_json(self) -> dict:
        return asdict(self)


PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (
    DeviceProfile("pi4", 4, 1500, "Raspberry Pi 4 (4 Cortex-A72 cores; budget for a 2 GB board)"),
    DeviceProfile("pi5", 4, 3000, "Raspberry Pi 5 (4 Cortex-A76 cores; budget for a 4 GB board)"),
    DeviceProfile("laptop", 2, None, "a laptop sharing its cores with other work; no budget"),
    DeviceProfile("phone", 2, 800, "a phone-class device: 2 big cores, tight memory"),
)}
