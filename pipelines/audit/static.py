"""Static sensitive-attribute check: no feature service, prompt template or model input names a sensitive
attribute (DESIGN.md: they live only in ``audit_attributes``, never in a feature view, prompt or model input).

The sensitive names are :data:`FIXED_ATTRIBUTES` plus every distinct ``attribute`` value of the home's
``audit_attributes`` table (the synthetic ``group``, MovieLens ``gender``/``age``, whatever a loader adds).
Places scanned — every name a model could be fed by:

- Feast: every entity, source, feature view (name, each field) and feature service (name, each projected
  feature) of ``feature_repo/feature_definitions.py`` and, when the home has one, of its applied registry;
- prompts: each registered template version rendered for a fabricated post and member whose every field
  holds a sentinel — the words left once the sentinels are removed are the template's own text (labels,
  headers, tags) — plus the prompt inputs' field names (``PostFeatures``, ``MemberFeatures``, the Feast
  names they are read from, the special tokens);
- model inputs: the GR's vocabularies (``CONTEXT_FEATURES``, ``PROFILE_FEATURES``, ``TASKS``, ``DEVICES``),
  the fields of ``GRConfig``, ``RankerInputs`` and ``RankingArrays``, the serving request path's
  ``MemberOnline`` / ``PostTable``, and the column names of the home's built training sets.

A name matches an attribute when the attribute's tokens occur as consecutive tokens of the name (split on
``_``/non-alphanumerics and camelCase): ``author_group`` and ``memberGender`` match, ``engaged`` and
``page`` do not contain the token ``age``. :data:`ALLOWED` lists reviewed exceptions with their reason.
Attribute *values* (``A``/``B``, ``M``/``F``, age buckets) are not scanned: one letter or a small number
cannot be told apart from ordinary text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feed.config import FeedPaths
    from training.prompts.template import PromptTemplate

# Protected characteristics commonly named in fairness audits, beyond what audit_attributes lists today.
FIXED_ATTRIBUTES: tuple[str, ...] = (
    "group",
    "gender",
    "sex",
    "age",
    "birth_year",
    "date_of_birth",
    "ethnicity",
    "race",
    "religion",
    "nationality",
    "disability",
    "sexual_orientation",
    "marital_status",
    "pregnancy",
)

# Reviewed names that contain an attribute token but do not carry the attribute.
ALLOWED: Mapping[str, str] = {
    "post_age_hours_log1p": "the post's age (hours since it was created), not a person's",
    "hist_age_s": "seconds since a history interaction, not a person's age",
}

SENTINEL = "qqz"  # fabricated prompt values are qqz0, qqz1, …: no template word looks like that
_SENTINEL_RE = re.compile(rf"\b{SENTINEL}\d+\b")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class SensitiveAttributeError(RuntimeError):
    """A feature service, prompt template or model input names a sensitive attribute."""


@dataclass(frozen=True)
class Place:
    """The names of one place a model reads from (``kind`` groups places in the summary)."""

    kind: str  # "feast", "prompt", "model_input", "training_set"
    where: str  # e.g. "Feast feature view 'member_profile'"
    names: tuple[str, ...]


@dataclass(frozen=True)
class Violation:
    where: str
    name: str
    attribute: str

    def __str__(self) -> str:
        return f"{self.where}: {self.name!r} names the sensitive attribute {self.attribute!r}"


@dataclass(frozen=True)
class StaticCheckResult:
    attributes: tuple[str, ...]
    scanned: dict[str, int]  # kind → names scanned
    places: int
    violations: tuple[Violation, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.violations

    def message(self) -> str:
        if self.passed:
            total = sum(self.scanned.values())
            return f"static sensitive-attribute check passed: {total} names in {self.places} places"
        lines = [f"static sensitive-attribute check FAILED: {len(self.violations)} violation(s)"]
        lines += [f"  - {v}" for v in self.violations]
        lines.append(
            "Sensitive attributes live only in audit_attributes (DESIGN.md): remove them from the places "
            "above, or, if a name only looks sensitive, add it with its reason to "
            "pipelines.audit.static.ALLOWED."
        )
        return "\n".join(lines)

    def raise_for_violations(self) -> None:
        if not self.passed:
            raise SensitiveAttributeError(self.message())

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "attributes": list(self.attributes),
            "scanned": dict(self.scanned),
            "places": self.places,
            "violations": [dataclasses.asdict(v) | {"message": str(v)} for v in self.violations],
            "notes": list(self.notes),
        }


# --- matching


def tokens(name: str) -> tuple[str, ...]:
    """``memberGender`` → (member, gender); ``post_age_hours_log1p`` → (post, age, hours, log1p)."""
    return tuple(t for t in re.split(r"[^a-z0-9]+", _CAMEL_RE.sub("_", name).lower()) if t)


def matched_attribute(
    name: str, attributes: Iterable[str], allowed: Mapping[str, str] = ALLOWED
) -> str | None:
    """The first attribute whose tokens occur consecutively in ``name``'s tokens; None if none (or the name
    is an allowed exception)."""
    if name in allowed:
        return None
    have = tokens(name)
    for attribute in attributes:
        want = tokens(attribute)
        if want and any(have[i : i + len(want)] == want for i in range(len(have) - len(want) + 1)):
            return attribute
    return None


def sensitive_attributes(paths: FeedPaths | None, fixed: Sequence[str] = FIXED_ATTRIBUTES) -> tuple[str, ...]:
    """:data:`FIXED_ATTRIBUTES` plus the distinct ``attribute`` values of the home's audit_attributes."""
    names = {a.lower() for a in fixed}
    if paths is not None:
        names |= {a.lower() for a in audit_attribute_names(paths)}
    return tuple(sorted(names))


def audit_attribute_names(paths: FeedPaths) -> list[str]:
    """Distinct ``attribute`` values of ``audit_attributes`` ([] when the home has no such table)."""
    import pyarrow.compute as pc

    from feed.config import AUDIT_TABLE
    from pipelines import delta_io

    table = paths.table(AUDIT_TABLE)
    if not delta_io.exists(table):
        return []
    column = delta_io.read(table, columns=["attribute"]).column(0)
    return sorted(str(v) for v in pc.unique(column).to_pylist() if v)


# --- Feast


def _field_names(obj: Any) -> list[str]:
    return [f.name for f in getattr(obj, "features", None) or []]


def feast_places(objects: Iterable[Any], origin: str = "Feast") -> list[Place]:
    """Names of every Feast object: entities (name, join keys), sources (name, timestamp and mapped
    columns), views (name, fields, entity columns) and services (name, every projected feature)."""
    places: list[Place] = []
    for obj in objects:
        kind = type(obj).__name__
        names = [str(obj.name)]
        if hasattr(obj, "feature_view_projections"):  # FeatureService
            for proj in obj.feature_view_projections:
                names += [proj.name, *(f"{proj.name_to_use()}__{f.name}" for f in proj.features)]
        elif hasattr(obj, "features"):  # FeatureView & co. (views have join_keys too: tested first)
            names += _field_names(obj)
            names += [c.name for c in getattr(obj, "entity_columns", None) or []]
        elif hasattr(obj, "join_keys"):  # Entity
            names += list(obj.join_keys)
        else:  # a data source
            names += [
                n
                for n in (getattr(obj, "timestamp_field", ""), getattr(obj, "created_timestamp_column", ""))
                if n
            ]
            mapping = getattr(obj, "field_mapping", None) or {}
            names += [*mapping.keys(), *mapping.values()]
        places.append(Place("feast", f"{origin} {kind} {obj.name!r}", tuple(names)))
    return places


def definition_objects(paths: FeedPaths | None) -> list[Any]:
    """The Feast objects of feature_repo/feature_definitions.py (imported afresh; no registry needed)."""
    from feed.config import PROJECT_ROOT, FeedPaths
    from pipelines import feature_store

    return feature_store.load_definitions(paths if paths is not None else FeedPaths(home=PROJECT_ROOT))


def registry_objects(paths: FeedPaths) -> tuple[list[Any], Path | None]:
    """The objects applied to the home's Feast registry; ([], None) when it has none."""
    from pipelines import feature_store

    registry = Path(feature_store.config_dict(paths, feature_store.StoreOptions())["registry"]["path"])
    if not registry.exists():
        return [], None
    fs = feature_store.store(paths)
    objects: list[Any] = [
        *fs.list_entities(),
        *fs.list_data_sources(),
        *fs.list_feature_views(),
        *fs.list_on_demand_feature_views(),
        *fs.list_stream_feature_views(),
        *fs.list_feature_services(),
    ]
    return objects, registry


# --- prompts


def _fabricated(cls: type, start: int) -> tuple[dict[str, Any], int]:
    """Every field of a prompt-input dataclass filled: strings/lists with sentinels, ints with numbers."""
    values: dict[str, Any] = {}
    i = start
    for f in dataclasses.fields(cls):
        kind = str(f.type)
        if f.name.endswith("_id"):
            values[f.name] = 7
        elif "percentile" in f.name:
            values[f.name] = 42
        elif kind.startswith("int"):
            values[f.name] = 12345
        elif kind.startswith("list"):
            values[f.name] = [f"{SENTINEL}{i}"]
        else:
            values[f.name] = f"{SENTINEL}{i}"
        i += 1
    return values, i


def template_texts(template: PromptTemplate) -> list[str]:
    """Everything ``template`` can write for a fabricated post and member (both count spellings, the cold
    and the empty-profile member, the history block)."""
    from training.prompts import MemberFeatures, PostFeatures, PromptConfig

    post_values, i = _fabricated(PostFeatures, 0)
    member_values, i = _fabricated(MemberFeatures, i)
    member_values["work_history"] = [
        f"{SENTINEL}{i} @ {SENTINEL}{i + 1} ({SENTINEL}{i + 2}), 2019-03 – present"
    ]
    post, member = PostFeatures(**post_values), MemberFeatures(**member_values)
    item = template.history_item(post)
    return [
        template.post_head(post, PromptConfig(counts="percentile")),
        template.post_head(post, PromptConfig(counts="raw")),
        template.post_text(f"{SENTINEL}{i + 3}"),
        item,
        template.member_profile(member),
        template.member_profile(MemberFeatures(member_id=8)),
        template.history_block([item, item]),
        template.no_history,
    ]


def template_words(template: PromptTemplate) -> tuple[str, ...]:
    """The template's own words: its rendered text minus the fabricated values."""
    words: set[str] = set()
    for text in template_texts(template):
        words |= set(_WORD_RE.findall(_SENTINEL_RE.sub(" ", text)))
    return tuple(sorted(words))


def prompt_places(templates: Mapping[str, PromptTemplate] | None = None) -> list[Place]:
    """Each template version's own words, and the field names prompts are rendered from."""
    from training.prompts import features as prompt_features
    from training.prompts import render, tokens

    templates = render.TEMPLATES if templates is None else templates
    places = [
        Place("prompt", f"prompt template {version!r} (rendered text)", template_words(template))
        for version, template in templates.items()
    ]
    for cls in (prompt_features.PostFeatures, prompt_features.MemberFeatures):
        names = tuple(f.name for f in dataclasses.fields(cls))
        places.append(Place("prompt", f"prompt input training.prompts.{cls.__name__}", names))
    feast_names = (*prompt_features.POST_FEAST_NAMES.values(), *prompt_features.MEMBER_PROFILE_FIELDS)
    places.append(Place("prompt", "prompt input Feast names (training.prompts.features)", feast_names))
    places.append(
        Place("prompt", "prompt special tokens (training.prompts.tokens)", tuple(tokens.SPECIAL_TOKENS))
    )
    return places


# --- model inputs


def _dataclass_place(kind: str, cls: type) -> Place:
    return Place(
        kind, f"model input {cls.__module__}.{cls.__name__}", tuple(f.name for f in dataclasses.fields(cls))
    )


def model_input_places() -> list[Place]:
    """The GR's input vocabularies and the request path's data classes (read at call time, so a change to
    a vocabulary is seen without re-importing this module)."""
    from serving import types as serving_types
    from training.data import ranking_data
    from training.ranking import features as gr_features
    from training.ranking import model as gr_model

    places = [
        Place(
            "model_input", f"model input training.ranking.features.{name}", tuple(getattr(gr_features, name))
        )
        for name in ("CONTEXT_FEATURES", "PROFILE_FEATURES", "TASKS", "DEVICES")
    ]
    for cls in (gr_model.GRConfig, gr_model.RankerInputs, ranking_data.RankingArrays):
        places.append(_dataclass_place("model_input", cls))
    for cls in (serving_types.MemberOnline, serving_types.PostTable, serving_types.ScoreRequest):
        places.append(_dataclass_place("model_input", cls))
    return places


def training_set_places(paths: FeedPaths) -> list[Place]:
    """Column names of every built training set's Parquet files (one schema per folder)."""
    import pyarrow.parquet as pq

    root = paths.data / "training"
    places: list[Place] = []
    if not root.is_dir():
        return places
    seen: set[Path] = set()
    for file in sorted(root.rglob("*.parquet")):
        key = file.parent if file.name.startswith("part-") else file
        if key in seen:
            continue
        seen.add(key)
        names = tuple(pq.read_schema(file).names)
        places.append(Place("training_set", f"training set {key.relative_to(paths.data)}", names))
    return places


# --- the check


@dataclass(frozen=True)
class StaticCheckConfig:
    fixed: tuple[str, ...] = FIXED_ATTRIBUTES
    allowed: Mapping[str, str] = field(default_factory=lambda: dict(ALLOWED))
    registry: bool = True  # also scan the home's applied Feast registry (when it has one)
    training_sets: bool = True  # also scan the column names of the home's built training sets


def collect_places(
    paths: FeedPaths | None,
    cfg: StaticCheckConfig,
    *,
    feast_objects: Iterable[Any] | None = None,
    templates: Mapping[str, PromptTemplate] | None = None,
) -> tuple[list[Place], list[str]]:
    notes: list[str] = []
    objects = definition_objects(paths) if feast_objects is None else list(feast_objects)
    places = feast_places(objects, "Feast definitions")
    if paths is not None and cfg.registry:
        applied, registry = registry_objects(paths)
        if registry is None:
            notes.append(f"no applied Feast registry under {paths.feast}: definitions only")
        places += feast_places(applied, f"Feast registry {registry}")
    places += prompt_places(templates)
    places += model_input_places()
    if paths is not None and cfg.training_sets:
        places += training_set_places(paths)
    return places, notes


def check_places(
    places: Iterable[Place], attributes: Sequence[str], allowed: Mapping[str, str] = ALLOWED
) -> list[Violation]:
    found: list[Violation] = []
    for place in places:
        for name in dict.fromkeys(place.names):
            attribute = matched_attribute(name, attributes, allowed)
            if attribute is not None:
                found.append(Violation(place.where, name, attribute))
    return found


def run_static_check(
    paths: FeedPaths | None = None,
    cfg: StaticCheckConfig | None = None,
    *,
    attributes: Sequence[str] | None = None,
    feast_objects: Iterable[Any] | None = None,
    templates: Mapping[str, PromptTemplate] | None = None,
    extra_places: Callable[[], Iterable[Place]] | None = None,
) -> StaticCheckResult:
    """Scan every place (see the module docstring). ``paths``: a home, for its audit_attributes names, its
    applied registry and its training sets; None scans the repository alone (what the test suite does).
    Never raises on a violation: call :meth:`StaticCheckResult.raise_for_violations`."""
    cfg = cfg or StaticCheckConfig()
    attrs = tuple(attributes) if attributes is not None else sensitive_attributes(paths, cfg.fixed)
    places, notes = collect_places(paths, cfg, feast_objects=feast_objects, templates=templates)
    if extra_places is not None:
        places += list(extra_places())
    scanned: dict[str, int] = {}
    for place in places:
        scanned[place.kind] = scanned.get(place.kind, 0) + len(place.names)
    violations = check_places(places, attrs, cfg.allowed)
    return StaticCheckResult(attrs, scanned, len(places), tuple(violations), tuple(notes))
