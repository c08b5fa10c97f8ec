"""reports/comparison.md from the comparison summary, in fixed formatting and order: same inputs, same bytes."""

import os
from pathlib import Path

import pandas as pd

from pipeline.analysis.selection import overrides_text

ALPHA = 0.05
MOSTLY = 0.5  # a backbone whose Grad-CAM maps put less of their mass inside the brain than this is warned about
LISTED_CLASSES = 12  # up to this many classes the report names them all and the per-class table shows each
PER_CLASS_ENDS = 5  # beyond, the per-class table shows this many worst and best
NAMED_IN_WARNING = 5  # a warning about more than LISTED_CLASSES classes names this many (the rest in a CSV)
TABLE_COLUMNS = (  # (header, column, format); a metric with an interval is shown as "value [low, high]";
    # a column the table lacks (qwk with unordered classes, binary_auc with no binary view) is left out
    ("model", "model", "{}"),
    ("kind", "kind", "{}"),
    ("val balanced accuracy", "val_balanced_accuracy", "{:.3f}"),
    ("balanced accuracy", "balanced_accuracy", "{:.3f}"),
    ("macro-F1", "macro_f1", "{:.3f}"),
    ("ROC AUC (one-vs-rest)", "roc_auc_ovr", "{:.3f}"),
    ("QWK", "qwk", "{:.3f}"),
    ("binary AUC", "binary_auc", "{:.3f}"),
    ("Grad-CAM mass inside the brain", "attention_inside_brain", "{:.2f}"),
    ("parameters", "params", "{:,.0f}"),
    ("size (MB)", "size_mb", "{:.1f}"),
    ("latency (ms/image, batch 1)", "latency_ms", "{:.2f}"),
    ("training (s)", "training_seconds", "{:.1f}"),
)


def render(summary: dict, table: pd.DataFrame, origin: dict, figures: dict[str, Path], tables: dict[str, Path],
           report_dir: Path) -> str:
    """The whole report as Markdown; `tables` are the CSV files it names (per_class_recall, binary_roc)."""
    sections = [
        "# Backbone comparison\n",
        pick(summary),
        tuning(origin),
        warnings(summary, table, origin, tables),
        setting(summary, tables["per_class_recall"]),
        "## Results\n\n" + markdown_table(table),
        folds(summary),
        charts(figures, summary, report_dir),
        tests(summary),
        per_class(summary, tables["per_class_recall"]),
        binary(summary, tables.get("binary_roc")),
        explanations(summary, report_dir),
        ensembles(summary),
        baselines(summary),
        produced_by(origin),
    ]
    return "\n".join(section for section in sections if section)


def cell(row: pd.Series, column: str, pattern: str) -> str:
    """One formatted cell, its interval appended when the row has one; blank when the value is missing."""
    value = row.get(column)
    if value is None or pd.isna(value):
        return ""
    text = pattern.format(value)
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    if low is not None and not pd.isna(low):
        text += f" [{pattern.format(low)}, {pattern.format(high)}]"
    return text


def markdown_table(table: pd.DataFrame) -> str:
    """The comparison table, one row per model in the summary's order."""
    columns = [column for column in TABLE_COLUMNS if column[1] in table.columns]
    lines = ["| " + " | ".join(header for header, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(row, column, pattern) for _, column, pattern in columns) + " |")
    return "\n".join(lines) + "\n\nEvery figure but the first is on the test split, in `backbones`' order: none " \
        "ranks the models. Intervals are 95% expanded percentile intervals (Hesterberg's, for few subjects) over " \
        "test subjects resampled with replacement within their class. Ensembles' parameters, size, latency and " \
        "training time are their members' added up; training time is the features, train and finetune stages' " \
        "logged seconds.\n"


def warnings(summary: dict, table: pd.DataFrame, origin: dict, tables: dict[str, Path]) -> str:
    """Plain statements that qualify the figures: the demo, random weights, fine-tuning not kept, thin intervals;
    `tables` are the CSV files that name every class a warning has too many of to list."""
    lines = []
    if origin["demo"]:
        lines.append(f"> **This is the synthetic demo** (`data.archive: {origin['archive']}`): scans drawn from one "
                     "brain template. Its figures show the pipeline works, not how the backbones do on real MRI.")
    backbones = table[table["kind"] == "backbone"]
    if not backbones["pretrained"].astype(bool).all():
        lines.append(f"> **`pretrained: false`** (`weights: {origin['params']['weights']}`): backbones start from "
                     "random weights, so this compares architectures trained from scratch, not transfer learning.")
    reverted = backbones.loc[backbones["fine_tuning_kept"].eq(False), "model"].tolist()
    if reverted:
        lines.append(f"> **Fine-tuning not kept** for {', '.join(reverted)}: no epoch lowered the val loss below the "
                     "trained head's, so the finetune stage kept the frozen base and head it started from.")
    shared = origin.get("shared_images") or {}
    if shared.get("images"):
        examples = ", ".join(f"`{path}`" for path in shared["examples"][:5])
        fate = ("left out of the later split (`split.drop_shared_images`)" if shared["dropped"] else
                "kept, so the later split's scores are partly leaked (`split.drop_shared_images: true` drops them)")
        lines.append(f"> **The source's own splits share {shared['images']} image(s)** pixel-identical to one in an "
                     f"earlier split, e.g. {examples}: {fate}. The first 20: `metrics/split.json`.")
    lines += attention_warnings(summary)
    single = summary["single_subject_classes"]
    if single:
        lines.append(f"> **Intervals understate the uncertainty**: the test split holds one subject of "
                     f"{some_classes(single, tables['single_subject_classes'])}. Resampling subjects cannot show how "
                     "another subject of these classes would score, so the brackets and the paired tests miss that "
                     "part of the doubt.")
    return "\n>\n".join(lines) + "\n" if lines else ""


def attention_warnings(summary: dict) -> list[str]:
    """One line naming every backbone whose Grad-CAM maps put most of their mass outside the brain (none: no line)."""
    outside = {name: record for name, record in (summary.get("explanations") or {}).items()
               if record.get("attention_inside_brain") is not None and record["attention_inside_brain"] < MOSTLY}
    if not outside:
        return []
    shares = ", ".join(f"{name} {record['attention_inside_brain']:.0%}" for name, record in outside.items())
    brain = sorted({f"{record['brain_share_of_image']:.0%}" for record in outside.values()})
    scans = sorted({str(record["scans"]) for record in outside.values()})
    one = len(outside) == 1
    return [f"> **{'A model looks' if one else f'{len(outside)} models look'} mostly outside the brain**: the share "
            f"of {'its' if one else 'their'} Grad-CAM maps' mass inside the brain is {shares}, on {' or '.join(scans)} "
            f"test scans where the brain covers {' to '.join(brain)} of the image. "
            f"{'Its' if one else 'Their'} scores may rest on the background or the outline rather than the anatomy "
            "(see Where each model looks)."]


def pick(summary: dict) -> str:
    """The reference model and the rule that chose it, which never reads a test score."""
    reference = summary["reference"]
    score = ("" if reference["val_balanced_accuracy"] is None else
             f" ({reference['val_balanced_accuracy']:.3f} on {reference['val_images']} val images of "
             f"{reference['val_subjects']} subjects)")
    return (f"**Reference model: {reference['model']}**, chosen before the test split was read: "
            f"{reference['rule']}{score}. Every other model is tested against it below; no model is "
            "called best for its test score, which would favour whichever one the test split's luck favours.\n")


def tuning(origin: dict) -> str:
    """How the backbones' training params were chosen: by `select` on val, by hand, or shared by all."""
    if origin["selection"]:
        return origin["selection"] + "\n"
    if origin["tune"]:
        entries = "; ".join(f"{name} {overrides_text(values)}" for name, values in origin["tune"].items())
        return ("Training params were set per backbone by hand (tune entries not written by `python -m pipeline "
                f"select`, so not known to be chosen on val): {entries}; the other backbones use the shared values.\n")
    return ""


def some_classes(names: list[str], csv_path: Path) -> str:
    """Every class name up to LISTED_CLASSES; past that, the count, a few names and the CSV that holds them all."""
    if len(names) <= LISTED_CLASSES:
        return ", ".join(names)
    return f"{len(names)} classes ({', '.join(names[:NAMED_IN_WARNING])}, ...; all in `{csv_path.as_posix()}`)"


def setting(summary: dict, per_class_csv: Path) -> str:
    """What was tested on."""
    classes = summary["classes"]
    kind = "ordinal" if summary["ordinal"] else "unordered"
    named = (f"classes {', '.join(classes)} ({kind})" if len(classes) <= LISTED_CLASSES
             else f"{len(classes)} classes ({kind}; named in `{per_class_csv.as_posix()}`)")
    return (f"Test split: {summary['test_images']} images of {summary['test_subjects']} subjects, {named}; "
            f"chance balanced accuracy is {1 / len(classes):.3f}.\n")


def charts(figures: dict[str, Path], summary: dict, report_dir: Path) -> str:
    """Links to the PNG charts, relative to the report."""
    negative = (summary.get("binary") or {}).get("negative_class")
    titles = {"balanced_accuracy": "Balanced accuracy with 95% intervals",
              "accuracy_latency": "Balanced accuracy against latency",
              "accuracy_size": "Balanced accuracy against size",
              "binary_roc": f"Any class but {negative} vs {negative}: ROC",
              "confusion": f"{summary['reference']['model']} (the reference): confusion matrix on the test split"}
    links = [f"![{titles[name]}]({Path(os.path.relpath(path, report_dir)).as_posix()})"
             for name, path in figures.items()]
    return "## Charts\n\n" + "\n\n".join(links) + "\n"


def folds(summary: dict) -> str:
    """With split.folds > 1: what the pooled figures are, and each backbone's test balanced accuracy per fold."""
    if "folds" not in summary:
        return ""
    spread = summary["folds"]["models"]
    k = summary["folds"]["k"]
    baselines = (" The classical baselines' rows are not: they are scored on fold 0's test split alone (their own "
                 "grouped cross-validation is under Classical baselines).") if summary.get("baselines") else ""
    lines = [f"## Cross-validated by subject: {k} folds\n",
             f"The backbones' and ensembles' figures above are on the {k} folds' out-of-fold test predictions pooled: "
             "each usable subject is in exactly one fold's test, so their rows and the paired tests rest on all "
             f"{summary['test_subjects']} subjects.{baselines} The val balanced accuracy (what the reference is picked "
             "on) is the mean of the folds' own, as a subject is in several folds' val. Size and latency are fold 0's "
             "model's; training seconds add up the folds. Each fold's test balanced accuracy:\n",
             "| backbone | " + " | ".join(f"fold {fold}" for fold in range(k)) + " | mean | std over folds |",
             "|---|" + "---|" * (k + 2)]
    for name, scores in spread.items():
        lines.append(f"| {name} | " + " | ".join(f"{score:.3f}" for score in scores["per_fold"])
                     + f" | {scores['mean']:.3f} | {scores['std']:.3f} |")
    return "\n".join(lines) + "\n"


def tests(summary: dict) -> str:
    """The reference against every other model with predictions: subject permutation test, Holm, bootstrap interval,
    and the per-image McNemar for reference."""
    reference = summary["reference"]["model"]
    results = summary["tests"]
    lines = [f"## Does any model differ from {reference}?\n",
             f"On the same test images, the balanced-accuracy difference {reference} minus the other. Its p-value "
             "comes from a paired permutation test whose unit is the subject: the two models' predictions are "
             "swapped subject by subject and the difference recomputed. Holm's adjustment over these "
             f"{len(results)} comparisons keeps the chance of any false alarm at {ALPHA}; a gap is called real when "
             f"the adjusted p < {ALPHA}. The interval is a 95% subject-paired bootstrap interval, not adjusted. "
             "McNemar's exact test counts images as independent, which slices of one subject are not; it is shown "
             "only to compare, never for the verdict.\n",
             *permutation_floor(results),
             "| against | difference [95% interval] | p, subjects permuted | p, Holm | McNemar p per image "
             "(ignores subjects) | real gap? |",
             "|---|---|---|---|---|---|"]
    for other, result in results.items():
        permutation, difference = result["permutation"], result["balanced_accuracy_difference"]
        interval = "" if difference["low"] is None else f" [{difference['low']:.3f}, {difference['high']:.3f}]"
        lines.append(f"| {other} | {difference['difference']:.3f}{interval} | {permutation['p_value']:.4f} | "
                     f"{permutation['p_holm']:.4f} | {result['mcnemar_per_image']['p_value']:.4f} | "
                     f"{'yes' if permutation['p_holm'] < ALPHA else 'no'} |")
    if not results:
        lines.append("| (one model only) | | | | | |")
    return "\n".join(lines) + "\n"


def permutation_floor(results: dict) -> list[str]:
    """A sentence when the test split has too few subjects for any adjusted p to fall below ALPHA."""
    if not results:
        return []
    first = next(iter(results.values()))["permutation"]
    smallest = 2 / first["permutations"] if first["exact"] else 1 / (first["permutations"] + 1)
    if smallest * len(results) < ALPHA:
        return []
    return [f"With {first['subjects']} test subjects the smallest p the permutation test can give is "
            f"{smallest:.4f}, so after Holm over {len(results)} comparisons none can fall below {ALPHA}: this "
            "split is too small to call any gap real.\n"]


def per_class(summary: dict, per_class_csv: Path) -> str:
    """Each model's recall per class, worst first by the reference model's; only the ends when there are many."""
    recall = summary["per_class_recall"]
    reference = summary["reference"]["model"]
    models = [column for column in recall.columns if column not in ("class", "test_images")]
    tested = recall[recall["test_images"] > 0].sort_values(reference, kind="stable")
    untested = recall.loc[recall["test_images"] == 0, "class"].tolist()
    shown = len(tested) <= LISTED_CLASSES
    extent = (f"every class, also in `{per_class_csv.as_posix()}`" if shown else
              f"the {PER_CLASS_ENDS} worst and {PER_CLASS_ENDS} best of {len(tested)} classes; every class is in "
              f"`{per_class_csv.as_posix()}`")
    lines = ["## Per class\n",
             (f"Recall of each class (the share of its test images a model gets right; balanced accuracy is its mean "
              f"over the classes), worst first by {reference}'s: {extent}.\n"),
             "| class | test images | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]

    def rows(part: pd.DataFrame) -> list[str]:
        return [f"| {row['class']} | {row['test_images']} | " + " | ".join(f"{row[model]:.3f}" for model in models)
                + " |" for _, row in part.iterrows()]

    gap = f"| ({len(tested) - 2 * PER_CLASS_ENDS} classes between) |" + " |" * (len(models) + 1)
    lines += rows(tested) if shown else [*rows(tested.head(PER_CLASS_ENDS)), gap, *rows(tested.tail(PER_CLASS_ENDS))]
    if untested:
        lines.append(f"\nNo test images of {', '.join(untested)}: no recall.")
    return "\n".join(lines) + "\n"


def binary(summary: dict, roc_csv: Path | None) -> str:
    """The binary view "any class but the negative class vs it": AUC and operating point per model."""
    if "binary" not in summary:
        return ""
    target = summary["binary"]["sensitivity_target"]
    negative = summary["binary"]["negative_class"]
    lines = [f"## Any class but {negative} vs {negative}\n",
             (f"The binary view of `data.negative_class`: score 1 - P({negative}) from the "
              f"{len(summary['classes'])}-class probabilities, positive = any class but {negative}. The operating "
              f"point is the highest threshold whose sensitivity reaches {target:.2f} (`compare.sensitivity`), so "
              f"the best specificity at that sensitivity. Curves: `{roc_csv.as_posix()}`.\n"),
             "| model | AUC | threshold | sensitivity | specificity |", "|---|---|---|---|---|"]
    for name, point in summary["binary"]["models"].items():
        lines.append(f"| {name} | {point['auc']:.3f} | {point['threshold']:.4f} | {point['sensitivity']:.3f} | "
                     f"{point['specificity']:.3f} |")
    return "\n".join(lines) + "\n"


def ensembles(summary: dict) -> str:
    """How the two ensembles were made."""
    if len(summary["ensemble_weights"]) < 2:
        return ""
    lines = ["## Ensembles\n",
             "`ensemble_mean` averages the backbones' class probabilities. `ensemble_val_loss` weights each backbone "
             "by exp(-validation loss), normalised to sum to 1: exp(-mean log loss) is the geometric mean "
             "probability the model gives the true class on the val split. The validation loss is the saved model's: "
             "the lowest fine-tuning val loss (early stopping keeps the best weights). Both are scored exactly as "
             "the evaluate stage scores a backbone.\n",
             "| backbone | validation loss | weight |", "|---|---|---|"]
    for name, weight in summary["ensemble_weights"].items():
        lines.append(f"| {name} | {summary['val_loss'][name]:.4f} | {weight:.4f} |")
    return "\n".join(lines) + "\n"


def explanations(summary: dict, report_dir: Path) -> str:
    """Each backbone's Grad-CAM grid, and its maps' share inside the brain against the brain's share of the image."""
    explained = summary.get("explanations") or {}
    if not explained:
        return ""
    lines = ["## Where each model looks\n",
             "Grad-CAM maps (the class evidence on the base's last convolutional block, resized to the scan) for each "
             "model's predicted class, on a fixed, seeded sample of test scans per class (`explain.per_class`). "
             "Inside the brain: the share of the maps' mass within the brain's silhouette, averaged over the scans; "
             "a map spread evenly would score the brain's share of the image. The last block sees the scan at 1/32 "
             "of its side (2 x 2 cells at 64 px; 1 x 1, an even map, for InceptionV3 at the demo's size), so at small "
             "sizes the share says little.\n"]
    measured = {name: record for name, record in explained.items() if record.get("attention_inside_brain") is not None}
    if measured:
        lines += ["| model | Grad-CAM mass inside the brain | brain's share of the image | scans |", "|---|---|---|---|"]
        lines += [f"| {name} | {record['attention_inside_brain']:.2f} | {record['brain_share_of_image']:.2f} | "
                  f"{record['scans']} |" for name, record in measured.items()]
        lines.append("")
    lines += [f"![{name}: Grad-CAM on test scans]({Path(os.path.relpath(record['grid'], report_dir)).as_posix()})\n"
              for name, record in explained.items()]
    return "\n".join(lines)


def baselines(summary: dict) -> str:
    """Where the baseline rows come from, the folds and their notes, the CV of each model on both inputs, and the
    reductions' table; or that there are none."""
    if summary["baselines"] is None:
        return "## Classical baselines\n\n`metrics/baselines.json` is absent: no baseline rows.\n"
    found = summary["baselines"]
    features, pixels, folds = found["features"], found["pixels"], found["folds"]
    lines = ["## Classical baselines\n",
             f"Rows of kind `baseline`: classical models on the cached {features} features and on the raw {pixels} "
             "(`baselines.pixel_size`, the stored images shrunk), scored once on the test split (no intervals, size "
             f"or latency). Their cross-validation: mean balanced accuracy over {folds} folds grouped by subject "
             "over train and val (`metrics/baselines.json`).\n"]
    lines += [f"> **Fewer folds or unscored classes**: {note}.\n" for note in found["notes"]]
    lines += [f"| model | CV on {features} features | CV on {pixels} |", "|---|---|---|"]
    lines += [f"| {name} | {scores['features']:.3f} | {scores['pixels']:.3f} |" for name, scores in found["cv"].items()]
    reductions, read = found["reductions"], {"features": f"{features} features", "pixels": pixels}
    if reductions["models"]:
        lines += ["\n### Multi-class reductions to binary models\n",
                  f"scikit-learn's one-vs-rest, one-vs-one and output-code (`code_size` {reductions['code_size']:g}) "
                  f"reductions around binary models, on the {read[reductions['input']]}, cross-validated as above; "
                  "the fit is the one on train, timed on one core.\n",
                  "| reduction | binary models | CV balanced accuracy | test balanced accuracy | fit on train (s) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {name} | {scores['binary_models']} | {scores['cv']['balanced_accuracy']:.3f} "
                  f"± {scores['cv']['balanced_accuracy_std']:.3f} | {scores['test']['balanced_accuracy']:.3f} | "
                  f"{scores['fit_seconds']:.2f} |" for name, scores in reductions["models"].items()]
    if found.get("fold_study"):
        lines.append(fold_study(found["fold_study"], read))
    return "\n".join(lines) + "\n"


def fold_study(study: dict, read: dict[str, str]) -> str:
    """The table of each cross-validation scheme's estimate against the test score, and what it answers."""
    test, interval = study["test"]["balanced_accuracy"], study["test"]["ci95"]
    schemes = sorted(study["schemes"].items(), key=lambda item: item[1]["folds"])
    lines = ["\n### How many folds?\n",
             f"`{study['model']}` on the {read[study['input']]}, cross-validated over train and val "
             f"({study['subjects']} subjects) by StratifiedGroupKFold with k folds, each k reshuffled, and by "
             "leave-one-subject-out (LeaveOneGroupOut): each scheme's estimate is the balanced accuracy of its held-out "
             "predictions pooled (every original of train and val predicted once), its spread the std over reshuffles. "
             f"Against it: the model fitted on all of train and val, scored once on test: {test:.3f} ("
             + (f"95% subject-bootstrap interval {interval['low']:.3f}-{interval['high']:.3f}" if interval else
                "no subject-bootstrap interval: test holds too few subjects")
             + "; `baselines.fold_study`).\n"]
    lines += [f"> **Read with care**: {note}.\n" for note in study["notes"]]
    lines += ["| scheme | fits | CV balanced accuracy | spread over reshuffles (std; range) | CV - test | seconds |",
              "|---|---:|---:|---|---:|---:|"]
    lines += [f"| {name} | {scheme['fits']} | {scheme['balanced_accuracy']:.3f} | "
              + (f"{scheme['spread']:.3f}; {scheme['low']:.3f}-{scheme['high']:.3f} ({scheme['repeats']} reshuffles)"
                 if scheme["repeats"] > 1 else "one way only")
              + f" | {scheme['balanced_accuracy'] - test:+.3f} | {scheme['seconds']:.1f} |" for name, scheme in schemes]
    if schemes:
        closest = min(schemes, key=lambda item: abs(item[1]["balanced_accuracy"] - test))[0]
        inside = [name for name, scheme in schemes
                  if interval and interval["low"] <= scheme["balanced_accuracy"] <= interval["high"]]
        verdict = ("; every scheme's estimate lies inside test's interval, so on this data the number of folds moves "
                   "the estimate less than test's own uncertainty" if len(inside) == len(schemes) else
                   f"; {len(schemes) - len(inside)} of {len(schemes)} estimates lie outside test's interval"
                   if interval else "")
        lines.append(f"\nOn this data: {closest} lands closest to test{verdict}. More folds train each fit on more "
                     "of the data (less pessimism) and cost more fits; the spread says how much one shuffle of the "
                     "folds decides.")
    return "\n".join(lines)


def produced_by(origin: dict) -> str:
    """The data, params and models behind the figures."""
    lines = ["## What produced these figures\n",
             f"- archive: `{origin['archive']}`, md5 `{origin['archive_md5'] or 'not in dvc.lock'}` (dvc.lock)"]
    lines += [f"- `{key}`: {value}" for key, value in origin["params"].items()]
    lines += [f"- `tune.{name}`: {overrides_text(values)}" for name, values in origin["tune"].items()]
    lines += [f"- model `{name}`: md5 `{md5 or 'not in dvc.lock'}`" for name, md5 in origin["model_md5"].items()]
    lines.append("- inputs: `metrics/eval/<backbone>.json`, `plots/eval/<backbone>/predictions.csv`, the seconds and "
                 "validation losses under `dvclive/` and `metrics/features/<backbone>.json`; regenerate with "
                 "`dvc repro compare` (or `python -m pipeline compare`)")
    return "\n".join(lines) + "\n"
