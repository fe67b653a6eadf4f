"""Report sections of the attack suite, drawn from arrays/attack.npz and metrics.json."""

from __future__ import annotations

import numpy as np

from bayesrobust.report import figures
from bayesrobust.report.sections import SECTIONS, Section, Table, fmt

RUN_COLUMNS = ["success_rate", "success_rate_fresh", "error_rate", "confidence", "entropy", "mi", "l0", "l2", "linf",
               "l2_success", "iterations", "seconds"]
UNDERSTATED_BY = 0.05  # a configured form this far below its adaptive form gets a warning


def _load(run):
    if not run.file("arrays/attack.npz").exists():
        return None
    return run.read_json("arrays/attack.json"), run.load_arrays("arrays/attack.npz"), run.metrics()


def _run_row(label: str, key: str, metrics) -> list[str]:
    return [label] + [fmt(metrics.get(f"{key}/{c}"), 3 if c in ("l0", "iterations", "seconds") else 4) for c in RUN_COLUMNS]


def understated_runs(meta, metrics) -> list[tuple[str, str, str, float, float]]:
    """(run, model, measure, configured, adaptive) wherever the configured form's success — under the
    judge's draws or under fresh ones — is more than ``UNDERSTATED_BY`` below its adaptive form's."""
    out = []
    for adaptive, info in meta.get("adaptive", {}).items():
        for name in meta["models"]:
            for measure in ("success_rate", "success_rate_fresh"):
                a_key, c_key = f"adv/{adaptive}/{name}/{measure}", f"adv/{info['of']}/{name}/{measure}"
                if a_key not in metrics or c_key not in metrics:  # plain models have no adaptive rows
                    continue
                a, c = metrics[a_key], metrics[c_key]
                if a is not None and c is not None and a - c > UNDERSTATED_BY:
                    out.append((info["of"], name, measure, c, a))
                    break
    return out


@SECTIONS.register("attacks")
def attack_runs_section(run) -> Section | None:
    loaded = _load(run)
    if loaded is None or not loaded[0]["runs"]:
        return None
    meta, arrays, metrics = loaded
    adaptive_of = {info["of"]: (name, info["params"]) for name, info in meta.get("adaptive", {}).items()}
    text = (f"{meta['examples']} test examples; success and uncertainty judged on {meta['eval_samples']} MC draws of the "
            f"predictive (1 for plain networks) — the same judge every attack uses for its own stopping and "
            f"bookkeeping; 'success_rate_fresh' re-judges the returned images on independent draws. Gradients averaged "
            f"over {meta['eot_samples']} dropout mask(s) per step as configured. Rows marked 'adaptive' run the same "
            "attack on stochastic models with expectation over transformation and, where the attack has one, a margin "
            "past the boundary (C&W's κ in logits, BIM-A's stopping margin in nats; parameters below the table). The clean rows give the same quantities on the unattacked examples; "
            "'worst case' counts an example as broken when any run broke it (robust accuracy: correct on the clean "
            "digit and unbroken).")
    warnings = [f"{r} on {m}: the configured form succeeds on {c:.1%} of the digits{' under fresh Monte-Carlo draws' if q.endswith('fresh') else ''}, "
                f"its adaptive form on {a:.1%} — the configured number understates the attack by {100 * (a - c):.0f} points "
                "and must not be read as robustness."
                for r, m, q, c, a in understated_runs(meta, metrics)]
    section = Section("Attacks", text, warnings=warnings)
    rows = []
    for name in meta["models"]:
        rows.append([f"clean · {name}", "–", "–", fmt(metrics.get(f"adv/clean/{name}/error_rate")),
                     fmt(metrics.get(f"adv/clean/{name}/confidence")), fmt(metrics.get(f"adv/clean/{name}/entropy")),
                     fmt(metrics.get(f"adv/clean/{name}/mi"))] + ["–"] * (len(RUN_COLUMNS) - 6))
    for run_name in meta["runs"]:
        for name in meta["models"]:
            key = f"adv/{run_name}/{name}"
            if f"{key}/success_rate" in metrics:
                rows.append(_run_row(f"{run_name} · {name}", key, metrics))
            if run_name in adaptive_of and f"adv/{adaptive_of[run_name][0]}/{name}/success_rate" in metrics:
                rows.append(_run_row(f"{run_name} · {name} · adaptive", f"adv/{adaptive_of[run_name][0]}/{name}", metrics))
    section.tables.append(Table("Attack runs (L0 in pixels, L2 / L∞ in [0, 1] pixel units)", ["run · model", *RUN_COLUMNS], rows))
    worst = [[name, fmt(metrics.get(f"adv/worst_case/{name}/success_rate")), fmt(metrics.get(f"adv/worst_case/{name}/robust_accuracy")),
              f"{metrics.get(f'adv/worst_case/{name}/examples', 0):.0f}", f"{metrics.get(f'adv/worst_case/{name}/examples_all_runs', 0):.0f}"]
             for name in meta["models"] if f"adv/worst_case/{name}/success_rate" in metrics]
    if worst:
        section.tables.append(Table("Worst case over every run (configured and adaptive)",
                                    ["model", "success rate", "robust accuracy", "examples", "attacked by every run"], worst))
    if adaptive_of:
        section.tables.append(Table("Adaptive forms", ["run", "parameters"],
                                    [[r, ", ".join(f"{k}={v}" for k, v in params.items())] for r, (_, params) in adaptive_of.items()]))
    several = [n for n in meta["models"] if meta["draws"][n] != "none"] if "draws" in meta else [
        n for n in meta["models"] if meta.get("stochastic", {}).get(n)]  # a run folder written before the draw protocol
    for name in several[:2]:
        panels = {}
        for r in meta["runs"]:
            forms = {"configured": f"adv/{r}/{name}/mutual_information"}
            if r in adaptive_of:
                forms["adaptive"] = f"adv/{adaptive_of[r][0]}/{name}/mutual_information"
            if all(key in arrays for key in forms.values()):
                panels[r] = {form: arrays[key] for form, key in forms.items()}
        if panels:
            fig = figures.attack_uncertainty_panels(arrays[f"clean/{name}/mutual_information"], panels, "mutual information (nats)", name)
            section.figures.append((f"attack_mi_{name}", fig, f"Mutual information of {name} on clean digits and on each run's "
                                    "adversarial examples, configured and adaptive. Where the configured form stops on the "
                                    "decision boundary its examples look uncertain; the adaptive form's, past it, less so."))
    for i, (attack, eps, runs) in enumerate(eps_families(meta)):
        curves = {m: {q: [metrics.get(f"adv/clean/{m}/{q}")] + [metrics.get(f"adv/{r}/{m}/{q}") for r in runs]
                      for q in ("error_rate", "entropy")} for m in meta["models"]}
        curves = {m: c for m, c in curves.items() if None not in c["error_rate"] + c["entropy"]}
        if curves:
            section.figures.append((f"eps_curves_{attack}_{i}", figures.eps_curves([0.0, *eps], curves, attack),
                                    f"{attack}: error rate and mean predictive entropy against ε (configured runs "
                                    f"{', '.join(runs)}; ε = 0 is the clean digits)."))
    first_model = meta["models"][0]
    for r in meta["runs"]:
        key = f"adv/{r}/{first_model}"
        if f"{key}/examples" in arrays and f"adv/{r}/original" in arrays:
            images = {"original (label)": arrays[f"adv/{r}/original"], f"{r} (predicted)": arrays[f"{key}/examples"]}
            labels = {"original (label)": arrays[f"adv/{r}/original_labels"], f"{r} (predicted)": arrays[f"{key}/predicted"]}
            section.figures.append((f"attack_examples_{r}", figures.image_rows(images, labels),
                                    f"{r}: one digit per class and its adversarial version against {first_model}."))
    return section


def eps_families(meta) -> list[tuple[str, list[float], list[str]]]:
    """Configured runs of one attack that differ only in ``eps`` (at least three), sorted by ε: the
    points of an ε curve, as (attack, ε values, run names)."""
    groups: dict[tuple, list[tuple[float, str]]] = {}
    for name, info in meta["runs"].items():
        params = dict(info["params"])
        if "eps" in params and info.get("targets", "none") == "none":
            eps = float(params.pop("eps"))
            groups.setdefault((info["attack"], tuple(sorted(params.items()))), []).append((eps, name))
    return [(key[0], [e for e, _ in sorted(v)], [n for _, n in sorted(v)]) for key, v in groups.items() if len(v) >= 3]


@SECTIONS.register("masking")
def masking_section(run) -> Section | None:
    """The gradient-masking checks per model: each attack's success, each check passed or failed, and
    a flag where any failed."""
    from bayesrobust.analysis.masking import CHECKS

    loaded = _load(run)
    if loaded is None or not loaded[0].get("masking"):
        return None
    meta, _, metrics = loaded
    m = meta["masking"]
    steps = sorted(m["steps"])
    columns = ["fgsm", *(f"apgd_{s}" for s in steps), "square", "unbounded", "transfer"]
    rows, flagged = [], []
    for name in meta["models"]:
        prefix = f"masking/{name}"
        checks = ["–" if c == "d" and name == m["reference"] else "✓" if metrics[f"{prefix}/check_{c}"] else "✗" for c in CHECKS]
        suspected = bool(metrics.get(f"{prefix}/suspected"))
        if suspected:
            flagged.append(name)
        applies = [c for c in columns if not (c == "transfer" and name == m["reference"])]  # (d) is not the reference's
        rows.append([name] + [fmt(metrics.get(f"{prefix}/{c}_success"), 3) if c in applies else "–" for c in columns] + checks
                    + ["masking suspected" if suspected else "no"])
    text = (f"Carlini et al. (2019)'s sanity checks at L∞ ε {m['eps']:g} on {m['examples']} test digits (success rates): "
            f"(a) APGD-CE at {steps[-1]} steps at least FGSM's, (b) Square ({m['queries']} queries, gradient-free) not above "
            f"APGD by more than {m['square_margin']:g}, (c) ε = 1 breaks every digit, (d) APGD at least the transfer of "
            f"{m['reference']}'s APGD examples, (e) APGD never weaker with more steps ({', '.join(map(str, steps))}); "
            f"(a), (d), (e) within {m['tolerance']:g}. Stochastic models are attacked with EOT over {m['eot_samples']} draws.")
    section = Section("Gradient-masking checks", text, [Table(
        "Success per attack and checks per model", ["model", "FGSM", *(f"APGD {s}" for s in steps), "Square", "ε = 1",
                                                    "transfer", *(f"({c}) {d}" for c, d in CHECKS.items()), "flag"], rows)])
    section.warnings.extend(f"Masking suspected for {n}: its robustness to gradient attacks is not evidence of robustness."
                            for n in flagged)
    return section


@SECTIONS.register("robustness-curve")
def robustness_curve_section(run) -> Section | None:
    """Robust accuracy against ε per norm and model: a table with intervals and a figure with bands."""
    from bayesrobust.analysis.robustness_curve import NORMS, curve_of, eps_key

    loaded = _load(run)
    if loaded is None or not loaded[0].get("robustness_curve"):
        return None
    meta, _, metrics = loaded
    c = meta["robustness_curve"]
    params = ", ".join(f"{k}={v}" for k, v in c["params"].items())
    text = (f"Robust accuracy of every model against {c['attack']}{f' ({params})' if params else ''} over an ε grid per norm, "
            f"on {c['examples']} test digits, with {c['resamples']}-resample bootstrap intervals (95%). A digit is robust at ε "
            "when it is classified correctly and no attack at that ε or a smaller one of the grid broke it (ε = 0: the clean "
            f"digits). Stochastic models are attacked with EOT over {c['eot_samples']} draws and judged on the MC mean.")
    section = Section("Robust accuracy against ε", text)
    curves: dict[str, dict] = {}
    for norm in (n for n in NORMS if n in c["grids"]):  # L∞ first, whatever order the JSON keeps
        grid, rows = c["grids"][norm], []
        for name in meta["models"]:
            values, low, high = curve_of(metrics, name, norm, grid)
            if None in values:
                continue
            curves.setdefault(NORMS[norm], {})[name] = (grid, values, low, high)
            rows.append([name] + [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(values, low, high)])
            weaker = [e for e in grid if metrics.get(f"robustness/{name}/{norm}/{eps_key(e)}/attack_robust_accuracy", 0)
                      > metrics[f"robustness/{name}/{norm}/{eps_key(e)}/robust_accuracy"] + 0.01]
            if weaker:
                section.warnings.append(
                    f"{name}, {NORMS[norm]}: the attack at ε {', '.join(f'{e:g}' for e in weaker)} alone leaves more digits "
                    "robust than an attack at a smaller ε did — a weak attack or masked gradients at the larger budget.")
        if rows:
            section.tables.append(Table(f"{NORMS[norm]}: robust accuracy [95% interval]", ["model", *(f"ε {e:g}" for e in grid)], rows))
    if not curves:
        return None
    section.figures.append(("robustness_curve", figures.robustness_curves(curves),
                            "Robust accuracy against ε per norm (bands: 95% bootstrap intervals over the digits)."))
    return section


@SECTIONS.register("uncertainty-aware")
def uncertainty_aware_section(run) -> Section | None:
    loaded = _load(run)
    if loaded is None or not loaded[0].get("uncertainty_aware"):
        return None
    meta, _, metrics = loaded
    u = meta["uncertainty_aware"]
    measure = "mutual information" if u["uncertainty"] == "mi" else "predictive entropy"
    text = (f"Does uncertainty detect attacks? For each digit, {u['attack']} ({', '.join(f'{k}={v}' for k, v in u['params'].items())}; "
            f"{u['eot_samples']} masks per gradient) searches for an example that is misclassified, has MC-mean confidence ≥ "
            f"{u['confidence']} and {measure} no higher than the {u['quantile']:.0%} quantile of the model's values on clean "
            f"{u['reference']} digits (the cap), with a penalty on the excess {measure} in its objective (Grosse et al. 2018). "
            "'success' is the fraction of digits for which such an example was found within the budget: an uncertainty "
            "threshold at the cap would miss every one of them while flagging 5% of clean digits.")
    rows = [[name, fmt(metrics.get(f"hclu/{name}/cap")), fmt(metrics.get(f"hclu/{name}/success_rate")),
             fmt(metrics.get(f"hclu/{name}/success_rate_fresh")), fmt(metrics.get(f"hclu/{name}/confidence")),
             fmt(metrics.get(f"hclu/{name}/mi")), fmt(metrics.get(f"hclu/{name}/entropy")),
             fmt(metrics.get(f"hclu/{name}/l2_success")), fmt(metrics.get(f"hclu/{name}/linf_success")),
             fmt(metrics.get(f"hclu/{name}/seconds"), 1)]
            for name in meta["models"] if f"hclu/{name}/success_rate" in metrics]
    return Section("High-confidence, low-uncertainty adversarial examples", text,
                   [Table(f"Uncertainty-aware goal (cap on {measure}, nats)",
                          ["model", "cap", "success", "success (fresh draws)", "confidence", "mi", "entropy",
                           "L2 (successful)", "L∞ (successful)", "seconds"], rows)])


@SECTIONS.register("lacok")
def lacok_section(run) -> Section | None:
    loaded = _load(run)
    if loaded is None or "lacok/rows" not in loaded[1]:
        return None
    _, arrays, metrics = loaded
    rows_names = [str(r) for r in arrays["lacok/rows"]]
    section = Section("Lacok (2016) Table 1 layout",
                      "Error rate and mean confidence of each model on the original test examples, FGSM adversarial "
                      "examples and random sign noise of the same size (clipped to [0, 1]; 'unclipped' rows follow Lacok's code, "
                      "which leaves the images unclipped), with the model's predictive entropy and mutual information.")
    for model in [str(m) for m in arrays["lacok/models"]]:
        rows = [[r] + [fmt(metrics.get(f"lacok/{model}/{r}/{q}")) for q in ("error", "confidence", "entropy", "mi")] for r in rows_names]
        section.tables.append(Table(model, ["test set", "error rate", "confidence", "entropy", "mi"], rows))
    images = {r: arrays[f"lacok/images/{r}"] for r in rows_names if f"lacok/images/{r}" in arrays}
    predicted = {r: arrays[f"lacok/predicted/{r}"] for r in images}
    section.figures.append(("lacok_figure1", figures.image_rows(images, predicted), "Lacok Figure 1 layout: one row per test set, predicted labels above."))
    return section


@SECTIONS.register("papernot")
def papernot_section(run) -> Section | None:
    loaded = _load(run)
    if loaded is None or "papernot/success" not in loaded[1]:
        return None
    meta, arrays, metrics = loaded
    pre = f"papernot/{meta['papernot_model']}"
    section = Section("Papernot et al. (2016): JSMA source-target analysis",
                      f"Model {meta['papernot_model']}; saliency on the {meta.get('papernot_space', 'logits')}; "
                      f"{int(metrics[f'{pre}/examples'])} source-target attacks. Distortion = fraction of the 784 pixels changed.")
    section.tables.append(Table("JSMA summary; R(F) = min over (X, t) of A(X, t)",
                                ["success rate", "distortion (all)", "distortion (successful)", "entropy adv", "entropy clean", "mi adv", "mi clean", "R(F)"],
                                [[fmt(metrics[f"{pre}/success_rate"]), fmt(metrics[f"{pre}/distortion_all"]), fmt(metrics[f"{pre}/distortion_success"]),
                                  fmt(metrics[f"{pre}/entropy"]), fmt(metrics[f"{pre}/clean_entropy"]), fmt(metrics[f"{pre}/mi"]), fmt(metrics[f"{pre}/clean_mi"]),
                                  fmt(metrics.get(f"{pre}/robustness"))]]))
    digits = list(range(10))
    for key, title, f in (("success", "success rate", "{:.2f}"), ("distortion", "mean distortion of successful samples", "{:.3f}"),
                          ("hardness", "hardness H(s, t)", "{:.3f}"), ("adversarial_distance", "adversarial distance A(X, t)", "{:.2f}")):
        matrix = arrays[f"papernot/{key}"].astype(float)
        if key == "hardness":
            matrix = matrix.copy()
            np.fill_diagonal(matrix, np.nan)
        section.figures.append((f"papernot_{key}", figures.heatmap(matrix, rows=digits, columns=digits, title=title,
                                                                   fmt=f, xlabel="target class", ylabel="source class"),
                                f"JSMA {title} per source (rows) and target (columns) class."))
    return section


@SECTIONS.register("sweep")
def sweep_section(run) -> Section | None:
    loaded = _load(run)
    if loaded is None or "sweep/logits" not in loaded[1]:
        return None
    meta, arrays, _ = loaded
    fig = figures.logit_sweep_figure(arrays["sweep/eps"], arrays["sweep/logits"], arrays["sweep/images"], int(arrays["sweep/label"]))
    return Section("Goodfellow et al. (2015) Figure 4 layout", f"Model {meta['sweep_model']}: logits along one fast-gradient-sign direction.",
                   figures=[("logit_sweep", fig, "Logits of all classes along x + ε·sign(∇ₓ CE); the inputs beside.")])


@SECTIONS.register("transfer")
def transfer_section(run) -> Section | None:
    loaded = _load(run)
    if loaded is None or "crossmodel/error" not in loaded[1]:
        return None
    _, arrays, _ = loaded
    rows, cols = [str(r) for r in arrays["crossmodel/rows"]], [str(c) for c in arrays["crossmodel/columns"]]
    error = arrays["crossmodel/error"]
    table = Table(f"Error of each column model on examples crafted on each row model ({arrays['crossmodel/attack']})",
                  ["crafted on \\ evaluated by", *cols], [[r] + [fmt(v) for v in error[i]] for i, r in enumerate(rows)])
    fig = figures.heatmap(error, rows=rows, columns=cols, title="transfer error", xlabel="evaluated by", ylabel="crafted on")
    mi = Table("Mean mutual information of the evaluating model", ["crafted on \\ evaluated by", *cols],
               [[r] + [fmt(v) for v in arrays["crossmodel/mi"][i]] for i, r in enumerate(rows)])
    tables = [table, mi]
    if "crossmodel/log_likelihood" in arrays:
        tables.insert(1, Table("Mean log-likelihood of the true label under the evaluating model (log 0.1 = −2.30: "
                               "'don't know')", ["crafted on \\ evaluated by", *cols],
                               [[r] + [fmt(v) for v in arrays["crossmodel/log_likelihood"][i]] for i, r in enumerate(rows)]))
    return Section("Cross-model transfer", "Szegedy et al. Table 2 / Bradshaw et al. layout, with Gaussian-noise control rows.",
                   tables, [("transfer_error", fig, "Transfer error matrix.")])


@SECTIONS.register("choi")
def choi_section(run) -> Section | None:
    loaded = _load(run)
    if loaded is None or "choi/original" not in loaded[1]:
        return None
    meta, a, metrics = loaded
    s, t = (int(v) for v in a["choi/source_target"])
    rows = [[str(i), f"{a['choi/orig_label'][i]} ({a['choi/orig_conf'][i]:.3f})", f"{a['choi/delta_label'][i]} ({a['choi/delta_conf'][i]:.3f})",
             f"{a['choi/adv_label'][i]} ({a['choi/adv_conf'][i]:.3f})", f"{a['choi/target_votes'][i]:.2f}", f"{a['choi/orig_mi'][i]:.4f}", f"{a['choi/adv_mi'][i]:.4f}"]
            for i in range(len(a["choi/original"]))]
    table = Table(f"{s} → {t}: label (confidence) of original, perturbation and adversarial image",
                  ["#", "original", "perturbation", "adversarial", "MC-dropout votes for target", "MC MI original", "MC MI adversarial"], rows)
    fig = figures.triptych_figure(a["choi/original"], a["choi/delta"], a["choi/adversarial"], {
        "original": (a["choi/orig_label"], a["choi/orig_conf"]), "delta": (a["choi/delta_label"], a["choi/delta_conf"]),
        "adversarial": (a["choi/adv_label"], a["choi/adv_conf"])})
    model = meta["triptych_model"]
    text = (f"Model {model}. Success {fmt(metrics[f'choi/{model}/success_rate'], 3)}, mean adversarial confidence "
            f"{fmt(metrics[f'choi/{model}/adv_confidence'], 3)}, mean L2 {fmt(metrics[f'choi/{model}/l2'], 3)}. The perturbation is classified after "
            "scaling |δ| to [0, 1]. MC-dropout columns keep the same weights' dropout on at test time (Choi's appendix): "
            "the fraction of dropout samples that predict the target, and the mutual information.")
    return Section("Choi: original / perturbation / adversarial", text, [table], [("choi_triptych", fig, f"Choi's triptych, {s} → {t}.")])


KOS_PUBLISHED = {(1, 0): (0.9920, 0.7760), (8, 6): (1.0, 0.5795)}  # seed slides, MNIST classifier attack: (AS_ignore, AS_target)


@SECTIONS.register("kos")
def kos_section(run) -> Section | None:
    loaded = _load(run)
    if loaded is None or not loaded[0].get("kos"):
        return None
    meta, arrays, metrics = loaded
    kos = meta["kos"]
    pre = f"kos/{kos['model']}"
    judged = bool(kos["judge"])
    columns = ["loss", "λ", "AS_target", "AS_ignore-target", *(["judge AS_target", "judge AS_ignore"] if judged else []),
               "‖x − x*‖₂", "‖x̂* − x_t‖₂", "entropy", "MI"]
    rows, curves = [], {}
    for loss in kos["losses"]:
        lams = kos["lams"][loss]
        for lam in lams:
            key = f"{pre}/{loss}/{lam:g}"
            rows.append([loss, f"{lam:g}", fmt(metrics[f"{key}/as_target"]), fmt(metrics[f"{key}/as_ignore_target"]),
                         *([fmt(metrics[f"{key}/judge_as_target"]), fmt(metrics[f"{key}/judge_as_ignore_target"])] if judged else []),
                         fmt(metrics[f"{key}/l2"], 3), fmt(metrics[f"{key}/output_l2"], 3), fmt(metrics[f"{key}/entropy"], 3),
                         fmt(metrics[f"{key}/mi"], 3)])
        curves[loss] = tuple([metrics[f"{pre}/{loss}/{lam:g}/{m}"] for lam in lams] for m in ("l2", "output_l2", "as_target"))
    text = (f"VAE {kos['model']}; {int(metrics[f'{pre}/examples'])} source–target attacks per loss and λ. Success is judged on the "
            "reconstruction of x* by the VAE's reconstruction-feedback classifier f_class(f_enc(x̂*)) (Kos et al.'s "
            f"evaluation; it gets {fmt(metrics[f'{pre}/clean_feedback_accuracy'], 3)} of the clean sources right)"
            + (f", and by the separate model {kos['judge']} reading the reconstruction "
               f"(clean: {fmt(metrics[f'{pre}/clean_judge_accuracy'], 3)})" if judged else "")
            + ". Codes are posterior means (Kos et al. do not sample), the VAE loss averages draws of q(z | x*).")
    section = Section("Kos et al. (2017): attacks on a VAE", text, [Table("Success and distortion per loss and λ", columns, rows)])
    first = {loss: kos["lams"][loss][0] for loss in kos["losses"]}
    if "classifier" in first:
        lam = first["classifier"]
        ignore, target = arrays[f"kos/classifier/{lam:g}/as_ignore_target"], arrays[f"kos/classifier/{lam:g}/as_target"]
        section.tables.append(Table(f"Classifier attack (λ = {lam:g}) beside the seed slides, AS_ignore-target (AS_target)",
                                    ["source → target", "ours", "published"],
                                    [[f"{s} → {t}", f"{ignore[s, t]:.2%} ({target[s, t]:.2%})", f"{pi:.2%} ({pt:.2%})"]
                                     for (s, t), (pi, pt) in KOS_PUBLISHED.items()]))
    digits = list(range(10))
    for loss, lam in first.items():
        section.figures.append((f"kos_{loss}_as_target", figures.heatmap(
            arrays[f"kos/{loss}/{lam:g}/as_target"].astype(float), rows=digits, columns=digits, title=f"{loss} attack, λ = {lam:g}: AS_target",
            xlabel="target class", ylabel="source class"), f"AS_target per source (rows) and target (columns), {loss} attack."))
    images = {"target x_t": arrays["kos/target_images"][[(s + 1) % 10 for s in range(10)]]}
    labels = {"target x_t": np.array([str((s + 1) % 10) for s in range(10)])}
    for loss in first:
        images[f"{loss}: x*"] = arrays[f"kos/{loss}/examples"]
        images[f"{loss}: x̂*"] = arrays[f"kos/{loss}/reconstructions"]
        tags = np.array([f"{p} H{h:.2f}" for p, h in zip(arrays[f"kos/{loss}/example_predicted"], arrays[f"kos/{loss}/example_entropy"])])
        labels[f"{loss}: x*"], labels[f"{loss}: x̂*"] = tags, np.array([""] * len(tags))
    section.figures.append(("kos_examples", figures.image_rows(images, labels, ncols=10),
                            "Source digit s of each class attacked towards s + 1: adversarial input x* and its reconstruction x̂*, "
                            "titled with the feedback classifier's label and predictive entropy H (nats) under z ~ q(z | x*)."))
    if any(len(kos["lams"][loss]) > 1 for loss in kos["losses"]):
        section.figures.append(("kos_distortion", figures.distortion_curves(curves),
                                "The λ sweep: output against input distortion, and AS_target against input distortion."))
    return section
