"""The federation file: who takes part, where their nodes listen, and how to train.

``load_federation(path)`` reads a TOML file (see ``parties/README.md`` for every key) and returns
a frozen ``Federation``. Every problem is a ``ConfigError`` naming the file, the table and the
key, e.g. ``fed.toml: [[party]] #2 'ecommerce': unknown key 'adress'``. Relative paths are
resolved against the folder of the file. Data files are not opened here: the federation file is
shared by every party, and each party only has its own data.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fedcredit.errors import ConfigError

COORDINATOR: Final = "coordinator"
ROLES: Final = ("lending", "ecommerce", "payments", "other")
LENDER_ROLE: Final = "lending"
OPTIMIZERS: Final = ("newton", "adam", "sgd")
#: The learning rate each optimizer uses when the federation file names none.
DEFAULT_LR: Final = {"newton": 1.0, "adam": 0.15, "sgd": 0.15}
BINNING_METHODS: Final = ("quantile", "equal_width")
UNKNOWN_ID_POLICIES: Final = ("sample", "mean", "refuse")
MIN_KEY_BITS: Final = 2048
MAX_KEY_BITS: Final = 8192
# Party names become certificate common names and DNS subject alternative names, so they must
# be valid DNS labels.
_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_MISSING: Final[Any] = object()


@dataclass(frozen=True)
class Endpoint:
    """A node: its name (a party name or ``"coordinator"``) and its ``host:port`` address."""

    name: str
    address: str
    cert_sha256: str | None = None  # pinned certificate fingerprint (64 lowercase hex digits)

    @property
    def host(self) -> str:
        return _split_address(self.address)[0]

    @property
    def port(self) -> int:
        return _split_address(self.address)[1]


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

    @property
    def is_lender(self) -> bool:
        return self.label_column is not None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.name, self.address, self.cert_sha256)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 10
    batch_size: int = 4096
    # None: the optimizer's own default (DEFAULT_LR: newton 1.0, adam and sgd 0.15).
    learning_rate: float | None = None
    l2: float = 0.01
    test_fraction: float = 0.25
    validation_fraction: float = 0.0
    optimizer: str = "newton"  # per-party Newton steps with the logistic curvature bound
    momentum: float = 0.9
    decay: float = 0.0
    tol: float = 1e-4
    early_stopping_rounds: int = 3  # 0 disables early stopping
    seed: int = 7
    x_scale_bits: int = 8  # measured: no AUC loss at 8 bits (benchmarks/precision.py)
    sigmoid: str = "local"  # "local" (expansion at the lender's own score) or "taylor" (FATE)
    threshold: float = 0.5  # probability of default above which evaluation counts a "bad"

    def __post_init__(self) -> None:
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", DEFAULT_LR.get(self.optimizer, 0.15))


@dataclass(frozen=True)
class ScorecardSettings:
    """Score = offset - factor * ln(odds of default); see fedcredit.model.scorecard."""

    base_score: float = 600.0
    base_odds: float = 50.0  # good:bad odds at the base score
    pdo: float = 20.0  # points to double the odds
    min_score: float = 350.0
    max_score: float = 950.0


@dataclass(frozen=True)
class BinningSettings:
    method: str = "quantile"
    bins: int = 10
    min_bin_share: float = 0.05
    iv_threshold: float = 0.02
    # Per column and run, partners add geometric noise to their bin counts (BINNING.md); 0: off.
    noise_epsilon: float = 1.0


@dataclass(frozen=True)
class ScoringSettings:
    """What each partner answers the lender's scoring requests (docs/THREAT-MODEL.md, F1, F2)."""

    # With one partner the final score gives the lender that partner's partial score.
    allow_single_partner: bool = False
    # An id the partner does not hold: "sample" answers a customer's partial score chosen by a
    # keyed hash of the id (indistinguishable), "mean" the mean, "refuse" fails the request.
    unknown_ids: str = "sample"
    quota_per_day: int = 100_000  # applicants per lender in any 24 hours, per partner
    precision_bits: int = 6  # partial scores the lender decrypts are rounded to 2^-bits


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
    scorecard: ScorecardSettings = ScorecardSettings()
    scoring: ScoringSettings = ScoringSettings()

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


class _Table:
    """One TOML table being read: typed getters whose errors name file, table and key."""

    def __init__(self, file: str, where: str, data: Any, known: tuple[str, ...]) -> None:
        self.file = file
        self.where = where
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: {where} must be a table")
        self.data: dict[str, Any] = data
        for key in data:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ConfigError(f"{file}: {where}: unknown key {key!r}{suffix}")

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.where} {key}: {problem}")

    def _get(self, key: str, default: Any) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise ConfigError(f"{self.file}: {self.where}: missing required key {key!r}")
        return default

    def text(self, key: str, default: Any = _MISSING) -> Any:
        """The string at ``key``, or ``default`` (which may be None) when the key is absent."""
        if key not in self.data:
            return self._get(key, default)
        value = self.data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _MISSING) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return str(value)

    def integer(
        self, key: str, default: Any, low: int | None = None, high: int | None = None
    ) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise self.error(key, f"must be {bounds}, got {value}")
        return value

    def number(self, key: str, default: float, low: float, high: float | None = None,
               *, low_open: bool = False, high_open: bool = False) -> float:  # fmt: skip
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {value!r}")
        value = float(value)
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high or value != value:
            lo = f"{'(' if low_open else '['}{low:g}"
            hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
            raise self.error(key, f"must be in {lo}, {hi}, got {value:g}")
        return value

    def names(self, key: str) -> tuple[str, ...] | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, list) or not value:
            raise self.error(key, "must be a non-empty list of column names")
        for item in value:
            if not isinstance(item, str) or not item:
                raise self.error(key, f"must list non-empty strings, got {item!r}")
        duplicates = sorted({v for v in value if value.count(v) > 1})
        if duplicates:
            raise self.error(key, f"lists {duplicates[0]!r} twice")
        return tuple(value)


class _Parser:
    def __init__(self, file: str, base: Path, allow_small_keys: bool) -> None:
        self.file = file
        self.base = base
        self.allow_small_keys = allow_small_keys

    def federation(self, doc: dict[str, Any], path: Path) -> Federation:
        _Table(self.file, "top level", doc, _TOP_KEYS)
        if "party" in doc and not isinstance(doc["party"], list):
            raise ConfigError(f"{self.file}: parties must be written as [[party]] tables")
        fed = _Table(self.file, "[federation]", self._required(doc, "federation"), _FED_KEYS)
        min_key_bits = 256 if self.allow_small_keys else MIN_KEY_BITS
        key_bits = fed.integer("key_bits", MIN_KEY_BITS)
        if key_bits < min_key_bits:
            raise fed.error(
                "key_bits", f"must be at least {min_key_bits} for real use, got {key_bits}"
            )
        if key_bits > MAX_KEY_BITS:
            raise fed.error("key_bits", f"must be at most {MAX_KEY_BITS}, got {key_bits}")
        coordinator = _Table(
            self.file, "[coordinator]", self._required(doc, "coordinator"), _COORDINATOR_KEYS
        )
        parties = tuple(self.party(i + 1, raw) for i, raw in enumerate(doc.get("party", [])))
        federation = Federation(
            name=fed.text("name"),
            key_bits=key_bits,
            coordinator=Endpoint(
                COORDINATOR, self.address(coordinator), self.fingerprint(coordinator)
            ),
            parties=parties,
            train=self.train(doc.get("train", {})),
            binning=self.binning(doc["binning"]) if "binning" in doc else None,
            tls=self.tls(doc["tls"]) if "tls" in doc else None,
            path=path,
            min_overlap=fed.integer("min_overlap", 100, low=1),
            scorecard=self.scorecard(doc.get("scorecard", {})),
            scoring=self.scoring(doc.get("scoring", {})),
        )
        self.check_parties(federation)
        return federation

    def _required(self, doc: dict[str, Any], table: str) -> Any:
        if table not in doc:
            raise ConfigError(f"{self.file}: missing required table [{table}]")
        return doc[table]

    def address(self, table: _Table) -> str:
        value = str(table.text("address"))
        try:
            _split_address(value)
        except ValueError as exc:
            raise table.error("address", str(exc)) from exc
        return value

    def fingerprint(self, table: _Table) -> str | None:
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

    def path(self, table: _Table, key: str, default: Any = _MISSING) -> Any:
        value = table.text(key, default)
        return value if value is None else (self.base / value).resolve()

    def party(self, index: int, raw: Any) -> PartyConfig:
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"[[party]] #{index}" + (f" {name!r}" if isinstance(name, str) else "")
        table = _Table(self.file, where, raw, _PARTY_KEYS)
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
        )

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

    def train(self, raw: Any) -> TrainSettings:
        t = _Table(self.file, "[train]", raw, _TRAIN_KEYS)
        d = TrainSettings()
        optimizer = t.choice("optimizer", OPTIMIZERS, d.optimizer)
        settings = TrainSettings(
            epochs=t.integer("epochs", d.epochs, low=1),
            batch_size=t.integer("batch_size", d.batch_size, low=1),
            learning_rate=t.number(
                "learning_rate", DEFAULT_LR.get(optimizer, 0.15), 0.0, low_open=True
            ),
            l2=t.number("l2", d.l2, 0.0),
            test_fraction=t.number("test_fraction", d.test_fraction, 0.0, 1.0, high_open=True),
            validation_fraction=t.number(
                "validation_fraction", d.validation_fraction, 0.0, 1.0, high_open=True
            ),
            optimizer=optimizer,
            momentum=t.number("momentum", d.momentum, 0.0, 1.0, high_open=True),
            decay=t.number("decay", d.decay, 0.0),
            tol=t.number("tol", d.tol, 0.0),
            early_stopping_rounds=t.integer("early_stopping_rounds", d.early_stopping_rounds, 0),
            seed=t.integer("seed", d.seed, low=0),
            x_scale_bits=t.integer("x_scale_bits", d.x_scale_bits, low=1, high=48),
            sigmoid=t.choice("sigmoid", ("local", "taylor"), d.sigmoid),
            threshold=t.number("threshold", d.threshold, 0.0, 1.0, low_open=True, high_open=True),
        )
        if settings.test_fraction + settings.validation_fraction >= 1.0:
            raise t.error(
                "validation_fraction", "test_fraction + validation_fraction must be below 1"
            )
        return settings

    def binning(self, raw: Any) -> BinningSettings:
        b = _Table(self.file, "[binning]", raw, _BINNING_KEYS)
        d = BinningSettings()
        return BinningSettings(
            method=b.choice("method", BINNING_METHODS, d.method),
            bins=b.integer("bins", d.bins, low=2, high=1000),
            min_bin_share=b.number("min_bin_share", d.min_bin_share, 0.0, 0.5, low_open=True),
            iv_threshold=b.number("iv_threshold", d.iv_threshold, 0.0),
            noise_epsilon=b.number("noise_epsilon", d.noise_epsilon, 0.0),
        )

    def scorecard(self, raw: Any) -> ScorecardSettings:
        t = _Table(self.file, "[scorecard]", raw, _SCORECARD_KEYS)
        d = ScorecardSettings()
        settings = ScorecardSettings(
            base_score=t.number("base_score", d.base_score, -1e6, 1e6),
            base_odds=t.number("base_odds", d.base_odds, 0.0, low_open=True),
            pdo=t.number("pdo", d.pdo, 0.0, low_open=True),
            min_score=t.number("min_score", d.min_score, -1e6, 1e6),
            max_score=t.number("max_score", d.max_score, -1e6, 1e6),
        )
        if settings.min_score >= settings.max_score:
            raise t.error("max_score", "must be above min_score")
        return settings

    def scoring(self, raw: Any) -> ScoringSettings:
        t = _Table(self.file, "[scoring]", raw, _SCORING_KEYS)
        d = ScoringSettings()
        return ScoringSettings(
            allow_single_partner=t.flag("allow_single_partner", d.allow_single_partner),
            unknown_ids=t.choice("unknown_ids", UNKNOWN_ID_POLICIES, d.unknown_ids),
            quota_per_day=t.integer("quota_per_day", d.quota_per_day, low=1),
            # 20 bits is the score scale itself (fedcredit.protocol.fixedpoint.Z_SCALE_BITS).
            precision_bits=t.integer("precision_bits", d.precision_bits, low=0, high=20),
        )

    def tls(self, raw: Any) -> TLSSettings:
        t = _Table(self.file, "[tls]", raw, ("ca", "cert_dir"))
        cert_dir = self.path(t, "cert_dir", "certs")
        ca = self.path(t, "ca", None)
        return TLSSettings(ca=ca if ca is not None else cert_dir / "ca.pem", cert_dir=cert_dir)


_TOP_KEYS: Final = (
    "federation", "coordinator", "party", "train", "binning", "scorecard", "scoring", "tls",
)  # fmt: skip
_SCORECARD_KEYS: Final = ("base_score", "base_odds", "pdo", "min_score", "max_score")
_FED_KEYS: Final = ("name", "key_bits", "min_overlap")
_PARTY_KEYS: Final = (
    "name", "role", "address", "data", "id_column", "label_column", "features", "loans",
    "categorical", "cert_sha256",
)  # fmt: skip
_COORDINATOR_KEYS: Final = ("address", "cert_sha256")
_TRAIN_KEYS: Final = tuple(f.name for f in dataclasses.fields(TrainSettings))
_BINNING_KEYS: Final = tuple(f.name for f in dataclasses.fields(BinningSettings))
_SCORING_KEYS: Final = tuple(f.name for f in dataclasses.fields(ScoringSettings))


def _split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as (host, port); ValueError when malformed."""
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or (":" in host and not address.startswith("[")):
        raise ValueError(f"must be host:port, got {address!r}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be 1-65535, got {address!r}")
    return host, int(port_text)
