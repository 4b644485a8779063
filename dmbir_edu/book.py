"""Helpers of the book: what several chapters would otherwise each write for themselves.

The chapters (``book/*.ipynb``) import this module (``from dmbir_edu import book``) for what is
plumbing rather than what they teach: showing the source of a package function as the package
has it (``show_source``), timing a call in wall and CPU seconds (``clock``, on ``bench.timeit``)
and waiting for a GPU before reading a clock (``wait``), and the sentences that read a verdict
off the rows of ``experiments.run``: ``psnr_by_case``, ``gap``, ``versus``, ``of_cases`` and
``real_ct_verdict``, the paragraph on the real CT volume that closes chapters "DiffusionMBIR for
sparse-view CT" (book/05_diffusionmbir.ipynb) and "Limited-angle CT"
(book/06_limited_angle.ipynb). Every sentence is computed from the rows, so that the text says
what this run measured. ``tv_sweep`` makes the saved runs behind chapter 5's kernel-free TV
sliders; ``long_runs``, ``long_table`` and ``steps_cg_tv`` read the saved 1000-step runs of
chapters 5, 6 and 7 (runs/long_steps) and separate what more steps, a bigger CG budget and the TV
term each change. No algorithm lives here; the volumes the chapters make are in ``data``.
"""
import inspect
import pathlib
import statistics
import time

from . import bench, metrics, tables


def show_source(*functions):
    """Display the source of package functions, as the package has it (one Markdown code block
    each, in a notebook; needs IPython, which the book's extra installs)."""
    from IPython.display import Markdown, display

    for f in functions:
        display(Markdown(f"```python\n{inspect.getsource(f)}```"))


# ---------------------------------------------------------------------------------------------
# Timing


wait = bench.wait       # before a clock is read, wait for a GPU's queued work (no-op on a CPU)


def clock(fn, repeats=5, device=None):
    """``(wall, cpu)``: the median wall seconds of ``fn()`` over ``repeats`` calls after one warm-up
    call, as ``bench.timeit`` measures them (waiting for a CUDA ``device``), and the median CPU
    seconds (``time.process_time``, this process, all its threads) of the same calls. CPU time
    over wall time says how many cores were busy, and CPU time is what a shared machine's load
    disturbs least."""
    cpus = []

    def timed():
        start = time.process_time()
        fn()
        cpus.append(time.process_time() - start)

    wall = bench.timeit(timed, repeats, sync=device)
    return wall, statistics.median(cpus[1:])          # cpus[0]: the warm-up call


# The live sliders of the chapters (they need a running kernel) and the size and step counts each
# runs at: the chapters read them, and ``python -m dmbir_edu.bench --live`` times one update of
# each method at each setting (the target: under 3 s on the 2-core machine). ``kwargs``: per
# method, what the slider sets on top of the method's defaults for the task; ``max_steps``: the
# most diffusion steps a slider runs (DDS's default with phantom64 is 50 on MRI and 30 at 4 and 2
# views, which took 3.5 to 4.4 s per update on the 2-core machine; ``live_kwargs``).
LIVE = {
    "02_mbir": dict(task="sparse_view", settings=(8,), size=64, depth=16, methods=("admm_tv_z", "admm_tv"),
                    kwargs={m: dict(lam=0.1, rho=1.0, n_iter=50, n_cg=10) for m in ("admm_tv_z", "admm_tv")}),
    "05_diffusionmbir": dict(task="sparse_view", settings=(8, 4, 2), size=64, depth=8, methods=("dds", "diffusionmbir"),
                             kwargs={"diffusionmbir": dict(n_steps=10)}, prior="phantom64", max_steps=20),
    "07_mri": dict(task="mri", settings=("uniform1d-x4", "uniform1d-x8", "vd2d-x8"), size=64, depth=8,
                   methods=("admm_tv", "dds"), kwargs={}, prior="phantom64", max_steps=20),
}


def live_kwargs(name, method, setting, A, lam_factor=1.0):
    """What the live slider ``LIVE[name]`` runs ``method`` with on the operator ``A`` of
    ``setting``: the method's settings for the task (``experiments.method_kwargs``; DDS's step
    count that of the slider's prior and setting), lam at ``lam_factor`` times its default on
    ``A`` (unless the slider sets lam itself), then the slider's own ``kwargs``, and at most
    its ``max_steps`` diffusion steps."""
    from . import experiments

    live = LIVE[name]
    kw = experiments.resolved_kwargs(live["task"], setting, method, A.image_size, A=A, prior=live.get("prior"))
    if "lam" in kw:                                          # the methods with a TV weight
        kw["lam"] *= lam_factor
    kw |= live["kwargs"].get(method, {})
    if "n_steps" in kw and "max_steps" in live:
        kw["n_steps"] = min(kw["n_steps"], live["max_steps"])
    return kw


# ---------------------------------------------------------------------------------------------
# Verdicts read off the rows of experiments.run


def psnr_by_case(rows, case=("setting", "noise", "volume")):
    """The PSNR of each row, mean over the three axes, keyed ``(*case, prior, method)``: the row's
    values of the ``case`` keys (by default its setting, noise and volume), then its ``"prior"``
    (a key the chapters add to each row: the prior's name, or "none") and its method."""
    return {tuple(r[k] for k in case) + (r["prior"], r["method"]): sum(r[a]["psnr"] for a in metrics.AXES) / 3
            for r in rows}


def gap(psnr, case, a, b):
    """PSNR of row ``a`` minus row ``b`` in one ``case``; ``a`` and ``b`` are (prior, method) pairs,
    ``psnr`` is a ``psnr_by_case`` table."""
    return psnr[case + a] - psnr[case + b]


def versus(psnr, case, a, b, name_b):
    """Row ``a`` against row ``b`` in words: "1.3 dB above <name_b>" or "0.4 dB below <name_b>"."""
    g = gap(psnr, case, a, b)
    return f"{abs(g):.1f} dB {'above' if g > 0 else 'below'} {name_b}"


def of_cases(k, n):
    """``k`` of ``n`` cases in words: "both cases", "neither case", "1 of the 3 cases", ..."""
    if k == n:
        return {1: "the one case", 2: "both cases"}.get(n, f"all {n} cases")
    if k == 0:
        return {1: "no case", 2: "neither case"}.get(n, f"none of the {n} cases")
    return f"{k} of the {n} cases"


def real_ct_verdict(rows, ct_prior, phantom_prior, ct_card, noise_free, heading, phantom, adds="adds to the data",
                    names=None, setting=None, diffusion=("dds", "diffusionmbir"), reported=None):
    """The paragraph (Markdown) that sums up a chapter's runs on the real CT test volume(s).

    ``rows``: rows of ``experiments.run`` on real volumes, each with a ``"prior"`` key (the name of
    the prior that made it, "none" for FBP and 3D ADMM-TV): every method with ``ct_prior`` (the
    prior fine-tuned on real CT; ``ct_card`` its weight card) noise-free, all but slice-wise with
    noise, and the ``diffusion`` samplers again with ``phantom_prior``, with and without noise;
    ``noise_free``: the noise label of the noise-free rows. Per case (setting, noise, volume): each
    diffusion sampler against 3D ADMM-TV (and slice-wise with ``ct_prior``) and the gain of the CT
    prior over the phantom prior; then in short: where the CT prior wins, where TV beats both
    samplers, what the noise costs each row, ``phantom`` (the chapter's sentence on its phantom
    experiment, without its full stop) and the lesson.

    What the two chapters say differently: ``heading`` (the first line, without its colon: the
    run's settings), ``adds`` (what a prior contributes to the reconstruction: "adds to the data"
    for sparse views, "puts into the missing wedge" for a limited angle), ``names`` (method ->
    the name the text gives it; default: the method's own) and ``setting`` (how a case names its
    setting before its noise, e.g. "{} views"; None: not at all, the heading names it).

    ``rows`` are one run (one seed): their margins carry no error bar. ``reported``: the rows of
    the same cell under the reported protocol (``tables.load_cell``, three repeats), whose paired
    differences and tie-band verdicts (``tables.compared``) close the paragraph as the verdict.
    """
    psnr = psnr_by_case(rows)
    name = (names or {}).get
    ct, ph = ct_prior, phantom_prior
    cases = list(dict.fromkeys(k[:3] for k in psnr))          # (setting, noise, volume), as run
    tv, sw = ("none", "admm_tv"), (ct, "slicewise")
    lines = []
    for case in cases:
        said = []
        for p in (ct, ph):
            rivals = [(tv, name("admm_tv", "admm_tv"))]
            if p == ct and case + sw in psnr:
                rivals.append((sw, f"{name('slicewise', 'slicewise')} ({ct})"))
            said.append(f"with `{p}`, " + "; ".join(
                f"{name(m, m)} is " + " and ".join(versus(psnr, case, (p, m), r, n) for r, n in rivals)
                for m in diffusion))
        said.append(f"`{ct}` minus `{ph}`: "
                    + ", ".join(f"{name(m, m)} {gap(psnr, case, (ct, m), (ph, m)):+.1f} dB" for m in diffusion))
        where = case[1] if setting is None else f"{setting.format(case[0])}, {case[1]}"
        lines.append(f"- On **{case[2]}** ({where}): " + "; ".join(said) + ".")

    pairs = [(c, m) for c in cases for m in diffusion]        # (case, method): the same sampler with either prior
    real_gain = [gap(psnr, c, (ct, m), (ph, m)) for c, m in pairs]
    ct_better = sum(g > 0 for g in real_gain)
    span = f"{min(real_gain):+.2f} to {max(real_gain):+.2f} dB"
    beats = f"the prior trained on real CT, `{ct}`, beats the phantom prior `{ph}` in"
    if ct_better == len(pairs):
        prior_verdict = f"{beats} every one of the {len(pairs)} (case, method) pairs, by {span}"
    elif ct_better == 0:
        prior_verdict = f"{beats} none of the {len(pairs)} (case, method) pairs ({span})"
    else:
        prior_verdict = f"{beats} {ct_better} of the {len(pairs)} (case, method) pairs ({span})"
    tv_ahead = {p: sum(psnr[c + tv] > max(psnr[c + (p, m)] for m in diffusion) for c in cases) for p in (ct, ph)}
    tv_verdict = ("3D ADMM-TV beats both diffusion methods in "
                  + " and in ".join(f"{of_cases(tv_ahead[p], len(cases))} with `{p}`" for p in (ct, ph)))
    if tv_ahead[ct] == len(cases):
        tv_verdict += ": even with the prior trained on real CT, TV wins on this chest"
    elif tv_ahead[ct] == 0:
        tv_verdict += f": with `{ct}`, a diffusion method beats 3D ADMM-TV in every case"
    noisy = [c for c in cases if c[1] != noise_free]
    lost = {row: sum(psnr[(c[0], noise_free, c[2]) + row] - psnr[c + row] for c in noisy) / len(noisy)
            for row in [tv] + [(p, m) for p in (ct, ph) for m in diffusion]}      # PSNR lost to the noise
    train = ", ".join(ct_card["train_volumes"])
    few = "one patient" if len(ct_card["train_volumes"]) == 1 else f"{len(ct_card['train_volumes'])} patients"
    caveat = (f"a training set of {few} ({ct_card['images_seen']:,} images seen) is small, and the samplers' settings "
              f"were chosen for `{ph}` on phantoms and checked for `{ct}` on its validation volume "
              f"({', '.join(ct_card['validation_volumes'])})")
    if ct_better == len(pairs):
        lesson = (f"The prior is the only difference between the paired rows, so training on real slices is what "
                  f"helped here: `{ct}` has seen the slices of {train}, "
                  f"{'another patient' if len(ct_card['train_volumes']) == 1 else 'other patients'}, and what "
                  f"it {adds} is "
                  f"closer to this scan than what `{ph}` learnt from phantoms; still, {caveat}.")
    elif ct_better == 0:
        lesson = f"Fine-tuning on the slices of {train} did not pay off here: {caveat}."
    else:
        lesson = f"Fine-tuning on the slices of {train} paid off in some cases and not in others: {caveat}."
    cost = ", ".join(f"{round(d, 2) + 0.0:.2f} dB for {name(row[1], row[1])}"      # + 0.0: no "-0.00"
                     + ("" if row[0] == "none" else f" ({row[0]})") for row, d in lost.items())
    return (f"{heading} (one run, one seed: no margin below carries an error bar):\n\n" + "\n".join(lines)
            + f"\n\n**In short: {prior_verdict}; {tv_verdict}.** The realistic noise ($I_0 = 10^5$) lowers the PSNR, "
            f"on average, by {cost}. {phantom}. `{ph}` was trained only on procedural phantoms: what it {adds} is what "
            f"it learnt about their slices, not about a chest. " + lesson + reported_verdict(reported, names))


def reported_verdict(reported, names=None, reference="admm_tv"):
    """The verdict sentence of a reported cell's rows (``tables.load_cell``; several cells may be
    joined): each method's paired difference to ``reference`` (default 3D ADMM-TV), its standard
    error and its verdict through the tie band, cell by cell; "" if ``reported`` is empty or None."""
    if not reported:
        return ""
    name = ({"admm_tv": "3D ADMM-TV"} | (names or {})).get
    recs = [r for r in tables.compared(reported, (reference,)) if f"vs {reference}" in r]
    cells = list(dict.fromkeys((r["setting"], r["noise"]) for r in recs))
    words = {"wins": "beats", "loses": "loses to", "ties": "ties with"}
    said = "; ".join((f"{setting}, {noise}: " if len(cells) > 1 else "") + ", ".join(
        f"{name(r['method'], r['method'])} {words[r['vs ' + reference][2]]} it ({r['vs ' + reference][0]:+.2f} ± "
        f"{r['vs ' + reference][1]:.2f} dB)" for r in recs if (r["setting"], r["noise"]) == (setting, noise))
        for setting, noise in cells)
    volumes = ", ".join(dict.fromkeys(r["volume"] for r in reported))
    n = sorted({r["n"] for r in recs})
    return (f"\n\n**The verdict, under the reported protocol** (appendix \"Results\": {volumes}, data from a "
            f"{reported[0].get('fine', 1)}x finer grid, {'/'.join(map(str, n))} samples (volumes x seeds) per "
            f"method, the paired difference to {name(reference, reference)} ± its standard error, a win or a loss "
            f"only outside two standard errors): {said}.")


def prior_card(prior):
    """The JSON card of a shipped prior (``dmbir_edu/weights/NAME.json``) as a dict."""
    import json

    from .prior import WEIGHTS_DIR

    return json.loads((WEIGHTS_DIR / f"{prior.name}.json").read_text())


def real_ct_description(names, size, depth, ct_prior, phantom_prior):
    """The Markdown list that introduces a chapter's real-CT section: each volume (its split,
    slices, voxel size, the slab the chapter reconstructs, source and licence, as
    ``data.real_volume_info`` reports them) and the two priors (what each was trained on, from
    its card). Chapters 5 and 6 show it."""
    from . import data

    lines = []
    for name in names:
        info = data.real_volume_info(name, size)
        dz, dy, dx = info["spacing_mm"]
        lines.append(f"- **{name}** ({info['split']} volume): {info['shape'][0]} axial slices of {size} x {size}, "
                     f"voxels {dz:.1f} x {dy:.1f} x {dx:.1f} mm (z, y, x); this section reconstructs its central "
                     f"{depth} slices, a {depth * dz:.0f} mm slab. Source: {info['credit']} (`{info['package']}`). "
                     f"Licence: {info['licence']}.")
    card = prior_card(ct_prior)
    lines.append(f"- **prior `{ct_prior.name}`**: started from `{card['init']}` and fine-tuned on the axial slices "
                 f"of {', '.join(card['train_volumes'])} (the CT training volume(s)), {card['images_seen']:,} images "
                 f"seen in {card['steps']} steps; validation volume(s) {', '.join(card['validation_volumes'])}, test "
                 f"volume(s) {', '.join(card['test_volumes'])}, never seen in training. Data: {card['data']}.")
    lines.append(f"- **prior `{phantom_prior.name}`**: trained from scratch on procedural phantoms only "
                 f"({prior_card(phantom_prior)['images_seen']:,} images seen): no real scan at all.")
    return "\n".join(lines)


# Chapter 5's kernel-free TV sliders: DiffusionMBIR's TV weight lam and ADMM penalty rho as multiples
# of their defaults on the operator, and the directions of its TV ("none" is lam = 0).
TV_SWEEP = {"lam": (0, 0.25, 1, 4, 16), "rho": (0.25, 1, 4, 16), "tv": ("z", "xyz", "none")}


def tv_sweep(protocol, setting=8, knobs=TV_SWEEP, **run_kwargs):
    """DiffusionMBIR at ``setting`` views under ``protocol`` (``experiments.Protocol``: volumes,
    data, seeds) for every value of ``knobs``: lam and rho at multiples of the defaults on this
    operator (``experiments.resolved_kwargs``), TV along "z" (the method), "xyz" (the row
    ``dmbir_xyz``) or "none" (``dmbir_no_tv``: no ADMM step at all, so lam = 0 is really no TV,
    not a zero threshold whose carried split variable still pulls towards earlier differences).
    Runs that coincide (lam x 1, rho x 1 and TV "z"; lam 0 and "none") run once. Returns the rows
    of ``experiments.run`` (``run_kwargs``: e.g. ``keep=True``, ``prior``), each with ``knobs``: the
    (knob, value) pairs it stands for, ``row``: its table row, and as ``method`` those pairs in
    words (e.g. "lam 4"), so that ``tables.save_volumes`` keeps every run under a key of its own."""
    from . import experiments

    base = experiments.resolved_kwargs("sparse_view", setting, "diffusionmbir", protocol.size)
    wanted = {}                              # (row label, overrides) -> the (knob, value) pairs it stands for

    def add(knob, value, label, overrides):
        wanted.setdefault((label, tuple(sorted(overrides.items()))), []).append((knob, value))

    for f in knobs.get("lam", ()):
        if f == 0:
            add("lam", f, "dmbir_no_tv", {})
        else:
            add("lam", f, "diffusionmbir", {"lam": f * base["lam"]} if f != 1 else {})
    for f in knobs.get("rho", ()):
        add("rho", f, "diffusionmbir", {"rho": f * base["rho"]} if f != 1 else {})
    for tv in knobs.get("tv", ()):
        add("tv", tv, {"z": "diffusionmbir", "xyz": "dmbir_xyz", "none": "dmbir_no_tv"}[tv], {})
    rows = []
    for (label, overrides), stands_for in wanted.items():
        for r in experiments.run("sparse_view", [setting], [label], protocol, overrides={label: dict(overrides)},
                                 progress=False, **run_kwargs):
            rows.append(r | {"knobs": stands_for, "row": label,      # "method": a name of its own per run
                             "method": " / ".join(f"{knob} {value}" for knob, value in stands_for)})
    return rows


# Chapters 5, 6 and 7: runs too long for a page (hundreds or thousands of diffusion steps), made
# once by a command (scripts/long_steps.sh, chapter 5's loop) and kept under runs/long_steps as
# PREFIX{n_steps}_seed{seed}.json / .pt; a page reads them, or with rerun=True makes them itself.
LONG_NAMES = {"admm_tv": "3D ADMM-TV", "diffusionmbir": "DiffusionMBIR", "slicewise": "slice-wise (50 CG)",
              "slicewise_cg1": "slice-wise (1 CG)"}


def long_label(row, names=LONG_NAMES):
    """A long run's row as "<method>, <n> steps" (3D ADMM-TV has no steps)."""
    steps = row["kwargs"].get("n_steps")
    return names.get(row["method"], row["method"]) + (f", {steps} steps" if steps else "")


def long_runs(folder, prefix, runs, task, setting, seeds=(0, 1, 2), rerun=False, names=LONG_NAMES, **run_kwargs):
    """The rows (with their volumes) of the saved runs ``folder/{prefix}{n}_seed{s}``, one file per
    step count ``n`` of ``runs`` ({n_steps: methods}) and seed ``s``: files that are missing are
    skipped (``[]`` if none is there), or with ``rerun=True`` every run is made here under
    ``experiments.REPORTED`` (``run_kwargs``: e.g. ``device``). Each row's ``method`` is its label
    (``long_label``), its table row is kept as ``row``."""
    from . import experiments

    folder = pathlib.Path(folder)
    rows = []
    for n_steps, methods in runs.items():
        for s in seeds:
            path = folder / f"{prefix}{n_steps}_seed{s}"
            if rerun:
                made = experiments.run(task, [setting], methods, experiments.REPORTED, n_steps=n_steps, n_volumes=1,
                                       repeats=(s,), keep=True, progress=False, **run_kwargs)
            elif path.with_suffix(".pt").exists():
                made = tables.load_rows(path.with_suffix(".json"), path.with_suffix(".pt"))
            else:
                continue
            rows += [r | {"method": long_label(r, names), "row": r["method"]} for r in made if r["method"] in methods]
    return rows


def long_contrasts(rows, contrasts):
    """Paired differences between long-run labels, in words: ``contrasts`` is a list of (what it
    measures, label a, label b); each whose two labels both ran becomes "what: a - b = d ± se dB
    (verdict)", the verdict through ``tables.verdict``'s tie band."""
    ran = {r["method"] for r in rows}
    said = []
    for what, a, b in contrasts:
        if a in ran and b in ran:
            (d, se, _), = tables.paired(rows, a, b).values()
            said.append(f"{what}: {a} minus {b} = {d:+.2f} ± {se:.2f} dB ({tables.verdict(d, se)})")
    return said


def steps_cg_tv(rows, long=1000, short=100):
    """The three differences that separate why a sampler of the long runs gains: more steps
    (DiffusionMBIR and the 1-CG slice-wise sampler at ``long`` against ``short`` steps), the CG
    budget (slice-wise with 50 CG iterations per step against 1, same steps) and the TV term
    (DiffusionMBIR against the 1-CG slice-wise sampler: same steps, same CG budget)."""
    dmbir, sw, sw1 = (LONG_NAMES[m] for m in ("diffusionmbir", "slicewise", "slicewise_cg1"))
    return long_contrasts(rows, [
        ("steps", f"{dmbir}, {long} steps", f"{dmbir}, {short} steps"),
        ("steps", f"{sw1}, {long} steps", f"{sw1}, {short} steps"),
        ("CG budget", f"{sw}, {long} steps", f"{sw1}, {long} steps"),
        ("CG budget", f"{sw}, {short} steps", f"{sw1}, {short} steps"),
        ("TV term", f"{dmbir}, {long} steps", f"{sw1}, {long} steps"),
        ("TV term", f"{dmbir}, {short} steps", f"{sw1}, {short} steps")])


def long_table(rows, refs, caption):
    """The long runs as a styled table: per label the number of seeds, the PSNR (mean over the three
    planes, mean ± sd over seeds), per-plane means, the flicker and dz ratios, the paired
    differences to each label of ``refs`` and the mean seconds of one run."""
    import pandas as pd

    from . import viz

    recs = tables.compared(rows, refs)
    frame = pd.DataFrame([
        {"method": r["method"], "n": r["n"], "PSNR": f"{r['psnr']:.2f} ± {r['psnr_sd']:.2f}",
         **{f"{a} PSNR": r[f"{a} psnr"] for a in metrics.AXES}, "flicker": r["flicker"], "dz ratio": r["dz_ratio"],
         **{f"− {ref}": (f"{r['vs ' + ref][0]:+.2f} ± {r['vs ' + ref][1]:.2f} {r['vs ' + ref][2]}"
                         if "vs " + ref in r else "") for ref in refs}, "seconds": r["seconds"]}
        for r in sorted(recs, key=lambda r: (r["method"] != refs[0], r["method"]))]).set_index("method")
    return viz.styled_table(frame, higher=[f"{a} PSNR" for a in metrics.AXES], formats={"seconds": "{:.0f}"},
                            caption=caption)


def two_prior_rows(task, settings, real_prior, phantom_prior, methods, contrast=("diffusionmbir", "dds"),
                   noise_free_only=("slicewise",), **run_kwargs):
    """The real-anatomy experiment of chapters 5, 6 and 7 (``experiments.run(..., source="real")``):
    every method of ``methods`` with the prior trained on real slices (``real_prior``), noise-free
    and at the realistic noise level (the costly ``noise_free_only`` rows only noise-free), and the
    methods of ``contrast`` again with the phantom prior. ``run_kwargs`` go to ``experiments.run``
    (e.g. ``depth``, ``n_steps``, ``keep=True``). Each row gets ``prior``: the name of the prior
    that made it, "none" for FBP, zero-filled and 3D ADMM-TV. Sorted by volume, setting, noise
    level and prior (stable: the methods in the order they ran)."""
    from . import experiments

    runs = [(real_prior, "none", list(methods)),
            (real_prior, "realistic", [m for m in methods if m not in noise_free_only]),
            (phantom_prior, "none", [m for m in methods if m in contrast]),
            (phantom_prior, "realistic", [m for m in methods if m in contrast])]
    rows = []
    for prior, noise, run_methods in runs:
        for r in experiments.run(task, list(settings), run_methods, prior=prior, source="real", noise=noise,
                                 **run_kwargs):
            rows.append(r | {"prior": prior.name if experiments.needs_prior([r["method"]]) else "none"})
    volumes, settings = list(dict.fromkeys(r["volume"] for r in rows)), list(settings)
    noises = [experiments.noise_label(task, n) for n in ("none", "realistic")]
    priors = ["none", real_prior.name, phantom_prior.name]
    rows.sort(key=lambda r: (volumes.index(r["volume"]), settings.index(r["setting"]), noises.index(r["noise"]),
                             priors.index(r["prior"])))
    return rows


def two_prior_table(rows, setting="setting", names=None):
    """``two_prior_rows`` as a table: one line per (volume, setting, noise, prior, method), PSNR
    (2 decimals) and SSIM (3) per axis and the seconds of the run; ``setting`` names that column
    (e.g. "views", "mask"), ``names`` maps methods to the names shown."""
    import pandas as pd

    names = names or {}
    frame = pd.DataFrame([
        {"volume": r["volume"], setting: r["setting"], "noise": r["noise"], "prior": r["prior"],
         "method": names.get(r["method"], r["method"]),
         **metrics.axis_columns(r), "seconds": r["seconds"]}
        for r in rows]).set_index(["volume", setting, "noise", "prior", "method"])
    return frame.round({c: 3 if c.endswith("SSIM") else 2 if c.endswith("PSNR") else 1 for c in frame})


# The saved runs a chapter reads live in the repository's runs/ folder, beside book/. A page opened
# alone (Colab, a downloaded notebook) has no runs/: runs_dir fetches the one folder it needs from
# the repository at the package's release tag, with git's sparse checkout (a few MB, not the
# repository), into the user cache.
REPOSITORY = "https://github.com/dmbir-edu/dmbir_edu"


def release_tag():
    """The git tag of the installed package's release, e.g. "v0.1.0" (the install cell of every
    chapter pins the same tag)."""
    from importlib.metadata import version

    return "v" + version("dmbir_edu")


def runs_dir(name, here=None, repository=None, cache=None):
    """The folder ``runs/<name>`` of saved runs: ``<here>/../runs/<name>`` where the page sits in a
    clone of the repository (``here``: the page's folder, default the current directory), else a
    sparse checkout of that folder alone from ``repository`` (default ``REPOSITORY``, or the
    environment variable DMBIR_EDU_REPOSITORY) at ``release_tag()``, made once under ``cache``
    (default ~/.cache/dmbir_edu). Returns the folder; where git cannot fetch it (no git, no
    network), says how to get it and returns the local path that does not exist, so that the
    chapter's own fallback (run it here, or skip) takes over."""
    import os
    import subprocess

    local = pathlib.Path(here or ".").resolve().parent / "runs" / name
    if local.exists():
        return local
    repository = repository or os.environ.get("DMBIR_EDU_REPOSITORY", REPOSITORY)
    clone = pathlib.Path(cache or pathlib.Path.home() / ".cache" / "dmbir_edu") / f"runs-{release_tag()}"
    if not (clone / "runs" / name).exists():
        git = ["git", "-c", "advice.detachedHead=false"]
        steps = ([git + ["clone", "--quiet", "--depth", "1", "--branch", release_tag(), "--filter=blob:none",
                         "--sparse", repository, str(clone)]] if not (clone / ".git").exists() else [])
        steps.append(git + ["-C", str(clone), "sparse-checkout", "add", f"runs/{name}"])
        try:
            for step in steps:
                subprocess.run(step, check=True, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as e:
            print(f"runs/{name} is not beside this page and could not be fetched ({type(e).__name__}); clone "
                  f"{repository} (tag {release_tag()}) and open the page from its book/ folder.")
            return local
    return clone / "runs" / name


def glue(name, value):
    """Keep ``value`` under ``name`` for the prose of the page (MyST-NB's ``glue``: the markdown
    writes ``{glue:text}`name:.2f``` where the number belongs, and the built page shows the number
    this run computed). Where MyST-NB is not installed (a notebook on Colab) nothing is kept, and the
    prose shows the role as written."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return value
    myst_glue(name, value, display=False)
    return value


def credits(names, priors, size):
    """Markdown lines that credit real volumes and describe priors: the volumes ``names`` grouped
    by source (credit, package, licence, as ``data.real_volume_info`` reports them) and one line per
    prior of ``priors`` (what it was trained on, from its card). Chapter 8 shows them."""
    from . import data

    by_source = {}
    for name in names:
        info = data.real_volume_info(name, size)
        by_source.setdefault((info["credit"], info["package"], info["licence"]), []).append(f"{name} ({info['split']})")
    lines = [f"- {', '.join(shown)}: {credit}; from {package}; licence: {licence}."
             for (credit, package, licence), shown in by_source.items()]
    for prior in priors:
        card = prior_card(prior)
        if "train_volumes" in card:
            lines.append(f"- prior **{prior.name}**: started from `{card['init']}`, fine-tuned on the slices of "
                         f"{' and '.join(card['train_volumes'])} ({card['modality'].upper()} training), validation "
                         f"{', '.join(card['validation_volumes'])}, test {', '.join(card['test_volumes'])}; "
                         f"{card['images_seen']:,} images seen.")
        else:
            lines.append(f"- prior **{prior.name}**: procedural phantoms only, {card['images_seen']:,} images seen.")
    return lines


def slice_role(card, test_names, size):
    """What a set of test volumes (phantom seeds, or names of real volumes) is to a prior, read off
    its card: "held-out phantoms of its family", "its train / validation / test volume", "never
    seen" or "never seen, other modality"."""
    from . import data

    if all(isinstance(n, int) for n in test_names):
        return ("held-out phantoms of its family" if "train_volumes" not in card
                else f"phantoms ({card['init']}'s family)")
    for split in ("train", "validation", "test"):
        if any(n in card.get(f"{split}_volumes", ()) for n in test_names):
            return f"its {split} volume"
    modality = data.real_volume_info(test_names[0], size)["modality"]
    return "never seen, other modality" if modality != card.get("modality", modality) else "never seen"
