"""The federation file: who takes part, where their nodes listen, and how to train.

``load_federation(path)`` reads a TOML file (see ``parties/README.md`` for every key) and returns
a frozen ``Federation``. Every problem is a ``ConfigError`` naming the file, the table and the
key, e.g. ``fed.toml: [[party]] #2 'ecommerce': unknown key 'adress'``. Relative paths are
resolved against the folder of the file. Data files are not opened here: the federation file is
shared by every party, and each party only has its own data. The settings tables (``[train]``,
``[binning]``, ``[scorecard]``, ``[scoring]``) are parsed by ``fedcredit.config.sections``, the
lender's ``[policy]`` by ``fedcredit.decision.policy_from_table``.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fedcredit.config.sections import (
    ScorecardSettings,
    ScoringSettings,
    parse_binning,
    parse_scorecard,
    parse_scoring,
    parse_train,
    parse_trees,
)
from fedcredit.config.table import MISSING, Table
from fedcredit.crypto.executors import EXECUTORS
from fedcredit.decision.policy import Policy, policy_from_table
from fedcredit.errors import ConfigError
from fedcredit.protocol.binning.settings import BinningSettings
from fedcredit.protocol.family import FAMILIES
from fedcredit.protocol.logistic.settings import TrainSettings
from fedcredit.protocol.trees.settings import TreeSettings

COORDINATOR: Final = "coordinator"
ROLES: Final = ("lending", "ecommerce", "payments", "other")
LENDER_ROLE: Final = "lending"
MIN_KEY_BITS: Final = 2048
MAX_KEY_BITS: Final = 8192
# Party names become certificate common names and DNS subject alternative names, so they must
# be valid DNS labels.
_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Endpoint:
    """A node: its name (a party name or ``"coordinator"``) and its ``host:port`` address."""

    name: str
    address: str
    cert_sha256: str | None = None  # pinned certificate fingerprint (64 lowercase hex digits)

    @property
    def host(self) -> str:
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        return split_address(self.address)[1]


@dataclass(frozen=True)
class PartyConfig:
    """One data party. ``label_column`` is set for the lender only."""

    name: str
    role: str
    address: str
    data: Path
    id_column: str
    label_column: str | None = None
    features: tuple[str, ...] | None = None  # None: every column but the id and the label
    loans: Path | None = None
    categorical: tuple[str, ...] = ()  # forced categories; text columns are found unasked
    cert_sha256: str | None = None  # pinned certificate fingerprint (64 lowercase hex digits)
    # Issue 16: the comb table's memory per key (None: the fixed window 8, 17.5 MiB at 2048
    # bits) and DJN randomness computed ahead per key while the node waits (0: off).
    table_mib: float | None = None
    randomness_stock: int = 0
    # The loan file's own names for ``id`` and ``outstanding_balance`` (fedcredit.data.loans).
    loans_columns: tuple[tuple[str, str], ...] = ()
    executor: str = "threads"  # where its heavy crypto runs: "threads", "processes" or "ray"
    ray_address: str | None = None  # with executor = "ray": "local", "auto" or the cluster's

    @property
    def is_lender(self) -> bool:
        return self.label_column is not None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.name, self.address, self.cert_sha256)


@dataclass(frozen=True)
class TLSSettings:
    """Where the federation CA and each node's certificate and key are.

    At an institution: ``<cert_dir>/ca.pem``, its own ``<name>.key`` (``fedcredit certs
    request``) and ``<name>.pem`` (``certs sign``), and the certificate ``<peer>.pem`` of
    every node the file pins (``cert_sha256``). ``init_certs`` (local runs) writes every
    node's key and certificate into one such folder.
    """

    ca: Path
    cert_dir: Path

    def cert(self, name: str) -> Path:
        return self.cert_dir / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.cert_dir / f"{name}.key"


@dataclass(frozen=True)
class Federation:
    """A loaded, validated federation file. ``tls`` is None when the file has no [tls] table."""

    name: str
    key_bits: int
    coordinator: Endpoint
    parties: tuple[PartyConfig, ...]
    train: TrainSettings
    binning: BinningSettings | None
    tls: TLSSettings | None
    path: Path
    min_overlap: int = 100
    family: str = "logistic"  # [model] family: the model family's name (fedcredit.protocol.family)
    # Frozen dataclasses: one shared default instance is safe.
    scorecard: ScorecardSettings = ScorecardSettings()  # noqa: RUF009
    scoring: ScoringSettings = ScoringSettings()  # noqa: RUF009
    # The lender's decision policy ([policy], docs/DECISIONS.md); None: the file has none.
    policy: Policy | None = None
    trees: TreeSettings | None = None  # [trees], when [model] family = "trees"

    @property
    def family_settings(self) -> Any:
        """The settings of the job's model family: ``[trees]`` for trees, else ``[train]``."""
        return self.trees if self.family == "trees" and self.trees is not None else self.train

    def party(self, name: str) -> PartyConfig:
        """The party called ``name``; ConfigError when there is none."""
        for party in self.parties:
            if party.name == name:
                return party
        raise ConfigError(f"{self.path.name}: no party named {name!r} (parties: {self._names()})")

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint of a party or of the coordinator."""
        if name == COORDINATOR:
            return self.coordinator
        return self.party(name).endpoint

    @property
    def lender(self) -> PartyConfig:
        """The one party that holds the labels."""
        return next(p for p in self.parties if p.is_lender)

    @property
    def hosts(self) -> tuple[PartyConfig, ...]:
        """Every data party but the lender, in file order."""
        return tuple(p for p in self.parties if not p.is_lender)

    @property
    def all_names(self) -> tuple[str, ...]:
        """Party names in file order, then ``"coordinator"``: every node of the federation."""
        return (*(p.name for p in self.parties), COORDINATOR)

    def cert_pins(self) -> dict[str, str]:
        """Node name to the SHA-256 of its certificate, for every table with ``cert_sha256``."""
        nodes = [*(p.endpoint for p in self.parties), self.coordinator]
        return {n.name: n.cert_sha256 for n in nodes if n.cert_sha256 is not None}

    def replace(self, **changes: Any) -> Federation:
        """A copy with some fields changed (not validated again)."""
        return dataclasses.replace(self, **changes)

    def replace_party(self, name: str, **changes: Any) -> Federation:
        """A copy in which party ``name`` has some fields changed (e.g. its address)."""
        self.party(name)
        parties = tuple(
            dataclasses.replace(p, **changes) if p.name == name else p for p in self.parties
        )
        return dataclasses.replace(self, parties=parties)

    def check_batch_size(self, feature_counts: dict[str, int]) -> None:
        """Raise ConfigError unless ``batch_size`` exceeds every party's feature count.

        A party learns ``X_h.T @ d`` for each mini-batch: ``f_h`` equations in ``B`` unknown
        residuals. With ``B <= f_h`` it could solve for the residuals, and so for the labels.
        Callers must also keep every mini-batch (the last one included) at least this large.
        """
        batch = self.train.batch_size
        for name, count in feature_counts.items():
            if batch <= count:
                raise ConfigError(
                    f"{self.path.name}: [train] batch_size: {batch} must be larger than the "
                    f"{count} features of party {name!r}, or that party could solve for the "
                    "residuals"
                )

    def _names(self) -> str:
        return ", ".join(p.name for p in self.parties)


def load_federation(path: str | Path, *, allow_small_keys: bool = False) -> Federation:
    """Read and validate a federation file; ConfigError naming file and key on any problem.

    ``allow_small_keys`` permits ``key_bits`` below 2048, for tests only.
    """
    label = str(path)
    try:
        with open(path, "rb") as handle:
            doc = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read federation file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: not valid TOML: {exc}") from exc
    return _Parser(label, Path(path).resolve().parent, allow_small_keys).federation(
        doc, Path(path).resolve()
    )


class _Parser:
    """The federation's own tables: [federation], [coordinator], [[party]] and [tls]."""

    def __init__(self, file: str, base: Path, allow_small_keys: bool) -> None:
        self.file = file
        self.base = base
        self.allow_small_keys = allow_small_keys

    def federation(self, doc: dict[str, Any], path: Path) -> Federation:
        Table(self.file, "top level", doc, _TOP_KEYS)
        if "party" in doc and not isinstance(doc["party"], list):
            raise ConfigError(f"{self.file}: parties must be written as [[party]] tables")
        fed = Table(self.file, "[federation]", self._required(doc, "federation"), _FED_KEYS)
        min_key_bits = 256 if self.allow_small_keys else MIN_KEY_BITS
        key_bits = fed.integer("key_bits", MIN_KEY_BITS)
        if key_bits < min_key_bits:
            raise fed.error(
                "key_bits", f"must be at least {min_key_bits} for real use, got {key_bits}"
            )
        if key_bits > MAX_KEY_BITS:
            raise fed.error("key_bits", f"must be at most {MAX_KEY_BITS}, got {key_bits}")
        coordinator = Table(
            self.file, "[coordinator]", self._required(doc, "coordinator"), _COORDINATOR_KEYS
        )
        parties = tuple(self.party(i + 1, raw) for i, raw in enumerate(doc.get("party", [])))
        family = self.family(doc.get("model", {}))
        federation = Federation(
            name=fed.text("name"),
            key_bits=key_bits,
            coordinator=Endpoint(
                COORDINATOR, self.address(coordinator), self.fingerprint(coordinator)
            ),
            parties=parties,
            train=parse_train(self.file, doc.get("train", {})),
            binning=parse_binning(self.file, doc["binning"]) if "binning" in doc else None,
            tls=self.tls(doc["tls"]) if "tls" in doc else None,
            path=path,
            min_overlap=fed.integer("min_overlap", 100, low=1),
            scorecard=parse_scorecard(self.file, doc.get("scorecard", {})),
            scoring=parse_scoring(self.file, doc.get("scoring", {})),
            family=family,
            trees=parse_trees(self.file, doc, family),
            policy=policy_from_table(doc["policy"], self.file) if "policy" in doc else None,
        )
        self.check_parties(federation)
        return federation

    def family(self, raw: Any) -> str:
        """``[model] family``: one of the registered model families (default "logistic")."""
        table = Table(self.file, "[model]", raw, ("family",))
        return table.choice("family", tuple(sorted(FAMILIES)), "logistic")

    def _required(self, doc: dict[str, Any], table: str) -> Any:
        if table not in doc:
            raise ConfigError(f"{self.file}: missing required table [{table}]")
        return doc[table]

    def address(self, table: Table) -> str:
        value = str(table.text("address"))
        try:
            split_address(value)
        except ValueError as exc:
            raise table.error("address", str(exc)) from exc
        return value

    def fingerprint(self, table: Table) -> str | None:
        """``cert_sha256``: hex digits, colons and case as ``openssl x509 -fingerprint`` gives."""
        value = table.text("cert_sha256", None)
        if value is None:
            return None
        digits = str(value).replace(":", "").strip().lower()
        if not _SHA256_RE.match(digits):
            raise table.error(
                "cert_sha256",
                "must be the SHA-256 fingerprint of the node's certificate, 64 hex digits (as "
                f"'fedcredit certs sign' prints it), got {value!r}",
            )
        return digits

    def path(self, table: Table, key: str, default: Any = MISSING) -> Any:
        value = table.text(key, default)
        return value if value is None else (self.base / value).resolve()

    def party(self, index: int, raw: Any) -> PartyConfig:
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"[[party]] #{index}" + (f" {name!r}" if isinstance(name, str) else "")
        table = Table(self.file, where, raw, _PARTY_KEYS)
        name = table.text("name")
        if name == COORDINATOR:
            raise table.error("name", f"{COORDINATOR!r} is reserved for the coordinator node")
        if not _NAME_RE.match(name):
            raise table.error(
                "name", "must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)"
            )
        id_column = table.text("id_column")
        label = table.text("label_column", None)
        if label is not None and label == id_column:
            raise table.error("label_column", f"must differ from id_column {id_column!r}")
        features = table.names("features")
        for column in (id_column, label):
            if features is not None and column in features:
                raise table.error("features", f"must not list the id or label column {column!r}")
        role = table.choice("role", ROLES)
        if label is not None and role != LENDER_ROLE:
            raise table.error(
                "label_column", f"only a party with role {LENDER_ROLE!r} holds labels"
            )
        return PartyConfig(
            name=name,
            role=role,
            address=self.address(table),
            data=self.path(table, "data"),
            id_column=id_column,
            label_column=label,
            features=features,
            loans=self.path(table, "loans", None),
            categorical=table.names("categorical") or (),
            cert_sha256=self.fingerprint(table),
            table_mib=table.number("table_mib", 0, 1, 4096) if "table_mib" in raw else None,
            randomness_stock=table.integer("randomness_stock", 0, low=0, high=10_000_000),
            loans_columns=tuple(
                (ours, str(table.text(key)))
                for ours, key in (
                    ("id", "loans_id_column"),
                    ("outstanding_balance", "loans_balance_column"),
                )
                if key in raw
            ),
            **self.executor(table),
        )

    def executor(self, table: Table) -> dict[str, Any]:
        """``executor`` and ``ray_address`` (docs/SCALING.md, "A party on a Ray cluster"); Ray itself is only needed,
        and only checked, by the node that runs with it."""
        executor = table.choice("executor", EXECUTORS, "threads")
        address = table.text("ray_address", None)
        if executor == "ray" and address is None:
            raise table.error(
                "ray_address",
                "is required with executor = 'ray' ('local' or the cluster's address)",
            )
        if executor != "ray" and address is not None:
            raise table.error("ray_address", "is only read with executor = 'ray'")
        if address is not None and address not in ("local", "auto") and ":" not in address:
            raise table.error(
                "ray_address",
                f"must be 'local', 'auto', 'host:port' or 'ray://host:port', got {address!r}",
            )
        return {"executor": executor, "ray_address": address}

    def check_parties(self, federation: Federation) -> None:
        parties = federation.parties
        lenders = [p.name for p in parties if p.is_lender]
        if len(lenders) != 1:
            found = ", ".join(repr(n) for n in lenders) or "none"
            raise ConfigError(
                f"{self.file}: [[party]] label_column: exactly one party must name a label "
                f"column (found {found})"
            )
        if len(parties) < 2:
            raise ConfigError(
                f"{self.file}: [[party]]: at least one party besides the lender is required"
            )
        seen_names: set[str] = set()
        seen_addresses = {federation.coordinator.address.lower(): COORDINATOR}
        for index, party in enumerate(parties, start=1):
            where = f"{self.file}: [[party]] #{index} {party.name!r}"
            if party.name in seen_names:
                raise ConfigError(f"{where} name: duplicate party name {party.name!r}")
            seen_names.add(party.name)
            other = seen_addresses.setdefault(party.address.lower(), party.name)
            if other != party.name:
                raise ConfigError(f"{where} address: {party.address} is also used by {other!r}")

    def tls(self, raw: Any) -> TLSSettings:
        t = Table(self.file, "[tls]", raw, ("ca", "cert_dir"))
        cert_dir = self.path(t, "cert_dir", "certs")
        ca = self.path(t, "ca", None)
        return TLSSettings(ca=ca if ca is not None else cert_dir / "ca.pem", cert_dir=cert_dir)


_TOP_KEYS: Final = (
    "federation", "coordinator", "party", "model", "train", "binning", "scorecard", "scoring",
    "policy", "trees",
    "tls",
)  # fmt: skip
_FED_KEYS: Final = ("name", "key_bits", "min_overlap")
_PARTY_KEYS: Final = (
    "name", "role", "address", "data", "id_column", "label_column", "features", "loans",
    "categorical", "cert_sha256", "table_mib", "randomness_stock", "loans_id_column",
    "loans_balance_column", "executor", "ray_address",
)  # fmt: skip
_COORDINATOR_KEYS: Final = ("address", "cert_sha256")


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as (host, port); ValueError when malformed."""
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or (":" in host and not address.startswith("[")):
        raise ValueError(f"must be host:port, got {address!r}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be 1-65535, got {address!r}")
    return host, int(port_text)
