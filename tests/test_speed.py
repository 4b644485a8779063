"""Issue "DDS in seconds": the network's speed switches, the benchmark's breakdown, the DDS
step-count choice and the live sliders' settings. Timings are not asserted (the machine is
shared); what is asserted is what the code decides and that the parts it reports add up."""
import pytest
import torch

import dmbir_edu as dm
from dmbir_edu import bench, book, experiments
from dmbir_edu import prior as prior_module


@pytest.fixture(scope="module")
def prior16():
    return dm.load_prior(image_size=16)


@pytest.mark.parametrize("flags, native", [({"avx2"}, False), ({"avx2", "avx512_bf16"}, True), ({"amx_bf16"}, True),
                                           (set(), False)])
def test_bf16_follows_the_cpu_flags_unless_forced(monkeypatch, prior16, flags, native):
    monkeypatch.setattr(prior_module, "cpu_flags", lambda: frozenset(flags))
    assert prior_module.native_bf16("cpu") is native
    assert prior16.uses_bf16() is native                      # autocast None: the hardware decides
    for forced in (True, False):
        monkeypatch.setattr(prior16, "autocast", forced)
        assert prior16.uses_bf16() is forced                  # the switch wins either way


def test_cpu_flags_are_read_from_the_machine():
    flags = prior_module.cpu_flags()
    assert isinstance(flags, frozenset)
    if flags:                                                  # Linux: a real flags line
        assert "fpu" in flags or "fp" in flags or "sse2" in flags or "neon" in flags or len(flags) > 5


def test_batch_default_is_the_devices_and_changes_no_number(prior16):
    assert prior16.batch is None and prior16.batch_size() == prior_module.BATCH["cpu"]
    x = torch.rand(11, 16, 16, generator=torch.Generator().manual_seed(0))
    ref = prior16.denoise(x, 0.7)
    try:
        for b in (1, 4, 64):
            prior16.batch = b
            assert prior16.batch_size() == b
            torch.testing.assert_close(prior16.denoise(x, 0.7), ref, rtol=1e-5, atol=1e-5)
    finally:
        prior16.batch = None


def test_bench_network_curves_report_every_batch_and_thread_count(prior16):
    batches = bench.batch_time(prior16, batches=(2, 5), n_slices=10, repeats=1)
    assert set(batches) == {2, 5} and all(t > 0 for t in batches.values())
    threads = bench.thread_time(prior16, threads=(1,), repeats=1)
    assert set(threads) == {1} and threads[1] > 0
    assert prior16.batch is None                                # the prior's own batch is left alone


def _flops_and_conv(prior):
    """(bench.flops_per_slice, the convolutions' 2 Cin/groups Cout kh kw Hout Wout counted by hooks)."""
    conv = []

    def hook(m, inp, out):
        kh, kw = m.kernel_size
        conv.append(2 * m.in_channels // m.groups * m.out_channels * kh * kw * out.shape[-2] * out.shape[-1])

    handles = [m.register_forward_hook(hook) for m in prior.net.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        return bench.flops_per_slice(prior), sum(conv)
    finally:
        for h in handles:
            h.remove()


def test_flops_per_slice_counts_at_least_the_convolutions(prior16):
    """The count includes every convolution; with 4x the pixels the convolutions cost exactly 4x."""
    total16, conv16 = _flops_and_conv(prior16)
    total32, conv32 = _flops_and_conv(dm.load_prior(image_size=32))
    assert total16 >= conv16 > 0 and total32 >= conv32 and conv32 == 4 * conv16 and total32 > total16


def test_run_one_parts_add_up_to_the_wall_time():
    r = bench.run_one(dict(size=16, views=4, method="dds", kwargs=dict(n_steps=2), depth=4, batch=3))
    p = r["parts"]
    assert set(p) == {"network", "projector", "rest"} and p["network"] > 0 and p["projector"] > 0
    assert abs(sum(p.values()) - r["seconds"]) < 1e-9
    assert set(r["psnr"]) == {"axial", "coronal", "sagittal"}


def test_bench_rows_before_and_after_differ_only_in_steps_and_batch():
    (method_b, _), (method_a, _) = bench.ROWS["dds_before"], bench.ROWS["dds"]
    before, after = bench.row_kwargs("dds_before"), bench.row_kwargs("dds")
    assert method_a == method_b == "dds" and before["n_steps"] == 50 and bench.ROW_BATCH["dds_before"] == 64
    assert {k: v for k, v in before.items() if k not in ("n_steps", "eta")} == \
        {k: v for k, v in after.items() if k not in ("n_steps", "eta")}
    assert after["n_steps"] == experiments.method_kwargs("sparse_view", "dds", setting=8, prior="phantom64")["n_steps"]


def test_projection_is_flops_over_the_assumed_rate():
    gpu = dict(name="x", fp32_tflops=1.0, bf16_tflops=4.0, efficiency=0.5)
    fp32, bf16 = bench.projection(1e9, 1000, gpu)
    assert fp32 == pytest.approx(1e12 / 0.5 / 1e12) and bf16 == pytest.approx(fp32 / 4)


def _rows(psnr_of):
    """Step-curve rows for two settings, two volumes: PSNR = psnr_of(N, eta, volume)."""
    rows = []
    for setting in (8, 4):
        for n in (10, 20, 50):
            for eta in (0.0, 0.85):
                for vol in ("a", "b"):
                    p = psnr_of(n, eta, vol) - (setting == 4)
                    rows.append(dict(task="sparse_view", setting=setting, noise="noise-free", volume=vol, repeat=0,
                                     method=experiments.dds_label(n, eta), kwargs=dict(n_steps=n, eta=eta),
                                     **{a: dict(psnr=p) for a in ("axial", "coronal", "sagittal")}))
    return rows


def test_choose_dds_steps_takes_the_smallest_n_within_the_tolerance():
    # eta 0.85: 10 steps 0.5 dB below the 50-step reference, 20 steps 0.2 below -> 20;
    # eta 0: 1 dB below at 10 and 20, 0.4 below at 50 -> none qualifies
    table = {(10, 0.85): 24.5, (20, 0.85): 24.8, (50, 0.85): 25.0, (10, 0.0): 24.0, (20, 0.0): 24.0, (50, 0.0): 24.6}
    chosen = experiments.choose_dds_steps(_rows(lambda n, eta, vol: table[n, eta] + 0.01 * (vol == "b")))
    assert chosen[0.85][0] == 20 and chosen[0.0][0] is None
    (d, se, n), = {c: v for c, v in chosen[0.85][1].items() if c[1] == "8"}.values()
    assert d == pytest.approx(-0.2) and n == 2


def test_live_kwargs_scale_lam_and_keep_the_sliders_settings():
    A = experiments.operator("sparse_view", 8)
    one = book.live_kwargs("05_diffusionmbir", "diffusionmbir", 8, A)
    four = book.live_kwargs("05_diffusionmbir", "diffusionmbir", 8, A, lam_factor=4)
    assert four["lam"] == pytest.approx(4 * one["lam"]) and one["n_steps"] == 10
    assert book.live_kwargs("02_mbir", "admm_tv", 8, A)["lam"] == 0.1          # chapter 2's slider sets lam itself
    dds = book.live_kwargs("05_diffusionmbir", "dds", 8, A)
    assert dds["n_steps"] == experiments.method_kwargs("sparse_view", "dds", setting=8, prior="phantom64")["n_steps"]
    M = experiments.operator("mri", "uniform1d-x4")
    assert book.live_kwargs("07_mri", "dds", "uniform1d-x4", M)["n_steps"] == 20                # at most max_steps
    assert book.live_kwargs("05_diffusionmbir", "dds", 4, experiments.operator("sparse_view", 4))["n_steps"] == min(
        20, experiments.method_kwargs("sparse_view", "dds", setting=4, prior="phantom64")["n_steps"])


def test_live_update_reconstructs_and_draws(monkeypatch):
    monkeypatch.setitem(book.LIVE, "tiny", dict(task="sparse_view", settings=(4,), size=64, depth=8, methods=("dds",),
                                               kwargs={"dds": dict(n_steps=5)}, max_steps=2))
    assert book.live_kwargs("tiny", "dds", 4, experiments.operator("sparse_view", 4))["n_steps"] == 2
    bench.live_update("tiny", "dds", 4)()


def test_dds_steps_follow_the_setting_where_it_has_its_own(monkeypatch):
    monkeypatch.setattr(experiments, "DDS_SETTING_STEPS", {("phantom64", "sparse_view", 8.0): 7,
                                                           ("ct64", "sparse_view", 8.0): 11,
                                                           ("phantom64", "mri", "uniform1d-x4"): 9})
    preset = dm.sampling.DDS.n_steps

    def steps(task, prior="phantom64", **kw):
        return experiments.method_kwargs(task, "dds", prior=prior, **kw)["n_steps"]

    assert steps("sparse_view", setting=8) == 7 and steps("sparse_view", setting=8, prior="ct64") == 11
    assert steps("sparse_view", setting="8") == 7                          # a view count as text
    assert steps("sparse_view", n_steps=3, setting=8) == 3                 # at most its own
    assert steps("sparse_view", n_steps=100, setting=8) == 7
    assert steps("sparse_view", setting=4) == preset and steps("sparse_view", setting=8, prior="mr64") == preset
    assert steps("mri", setting="uniform1d-x4") == 9
    assert steps("sparse_view") == preset and steps("sparse_view", setting=8, prior=None) == preset
    rows = experiments.run("sparse_view", [8], ["dds"], size=16, depth=3, fine=1, progress=False,
                           prior=dm.load_prior(image_size=16))
    assert rows[0]["kwargs"]["n_steps"] == 7 and rows[0]["nfe_per_slice"] == 7
