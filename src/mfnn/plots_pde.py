"""Figures of a `dynamics.kind: pde` run: the density over time and the energy identity.

The curves of the energy identity take the pde colour of `mfnn.style.DYNAMICS_COLORS`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import plt, save_figure
from .rundir import list_snapshots
from .style import COLORS, DYNAMICS_COLORS, METRIC_LABELS


def _positive(v):
    v = np.asarray(v, float)
    return np.where(v > 0, v, np.nan)


def pde_figures(run_dir, metrics: dict, pb) -> list[Path]:
    """density.png (1-D: the density at each snapshot, coloured by t; 2-D: panels of the
    first, middle and last snapshots) and run.png (risk, free energy, the energy identity)."""
    from .pde.run import read_density

    run_dir = Path(run_dir)
    fig_dir = run_dir / "figures"
    out = []
    snaps = list_snapshots(run_dir)
    names = []
    for blk in pb.model.present_blocks:
        size = pb.model.d if blk == "w" else 1
        names += [f"${blk}$"] if size == 1 else [f"${blk}_{i + 1}$" for i in range(size)]
    if snaps:
        steps = sorted(snaps)
        if pb.grid.dim == 1:
            fig, ax = plt.subplots(figsize=(6.5, 4.3), layout="constrained")
            cmap = plt.get_cmap("viridis")
            for i, s in enumerate(steps):
                grid, rho, t = read_density(snaps[s])
                ax.plot(
                    grid.axis(0), rho, color=cmap(i / max(len(steps) - 1, 1)), label=f"t={t:.3g}"
                )
            ax.set(xlabel=names[0], ylabel=r"density $\rho_t$", title="density on the grid")
            if len(steps) <= 12:
                ax.legend(fontsize=7)
            fig.suptitle(f"the density of the mean-field PDE, t = 0 .. {t:.3g}")
        else:
            picks = sorted({steps[0], steps[len(steps) // 2], steps[-1]})
            fig, axes = plt.subplots(
                1, len(picks), figsize=(4.4 * len(picks), 3.8), layout="constrained"
            )
            for ax, s in zip(np.atleast_1d(axes), picks, strict=True):
                grid, rho, t = read_density(snaps[s])
                extent = (grid.low[1], grid.high[1], grid.low[0], grid.high[0])
                im = ax.imshow(rho, origin="lower", extent=extent, aspect="auto", cmap="magma")
                ax.set(title=f"t = {t:.3g}", xlabel=names[1], ylabel=names[0])
                fig.colorbar(im, ax=ax, shrink=0.8, label=r"density $\rho_t$")
            fig.suptitle(f"the density of the mean-field PDE, t = 0 .. {t:.3g}")
        out.append(save_figure(fig, fig_dir / "density.png"))
    if metrics:
        t = metrics["t"]
        color = DYNAMICS_COLORS["pde"]
        fig, ax = plt.subplots(1, 3, figsize=(13, 4.0), layout="constrained")
        ax[0].semilogy(t, _positive(metrics["loss"]), color=color, label="train")
        if "test_loss" in metrics:
            ax[0].semilogy(t, _positive(metrics["test_loss"]), "--", color=color, label="test")
        ax[0].set(xlabel="t", ylabel=r"risk $R(\rho_t)$", title="loss")
        ax[0].legend()
        key = "free_energy" if "free_energy" in metrics else "energy"
        ax[1].plot(t, metrics[key], color=color)
        ax[1].set(
            xlabel="t",
            ylabel=METRIC_LABELS[key].replace(r"\mu_t", r"\rho_t"),
            title=key.replace("_", " "),
        )
        ax[2].semilogy(
            t, _positive(metrics["dissipation"]), color=color, label="dissipation -dF/dt"
        )
        ax[2].semilogy(
            t,
            _positive(np.abs(metrics["energy_residual"])),
            color=COLORS["init"],
            label="|dF/dt + dissipation|",
        )
        ax[2].set(
            xlabel="t", ylabel="energy rate (per unit t)", title="energy dissipation identity"
        )
        ax[2].legend(fontsize=8)
        cells = "x".join(str(c) for c in pb.grid.cells)
        fig.suptitle(
            f"mean-field PDE on a {cells} grid ({pb.solver.flux}, {pb.solver.scheme}): "
            f"{key.replace('_', ' ')} decreases, dF/dt = -dissipation"
        )
        out.append(save_figure(fig, fig_dir / "run.png"))
    return out
