"""Hand-written NumPy references for the deep models (no JAX, no autodiff).

Each network has an explicit forward pass that keeps its intermediates and an explicit
backward pass (manual backpropagation) giving dR/dtheta for every particle row, where

    R = (1/(2n)) sum_i |f(x_i) - y_i|^2

is the empirical square loss. Everything is float64. The particle velocities the mfnn
objectives return are v = -c dR/dtheta (`*_velocity`), with c = N (ensemble ResNet),
L N (wide ResNet), N (multilayer, mean_field) or 1 (multilayer, ntk).

Networks (theta_j^l a d x d matrix, sigma applied elementwise):

* Ensemble ResNet, rows theta (N, L d d), theta_j^l = theta[j].reshape(L, d, d)[l]:
  X^0 = x, X^{l+1} = X^l + (1/L) sigma(X^l theta_j^l^T), f = (1/N) sum_j X^L_j.
* Wide ResNet, rows theta (L N, d d), row l N + j = theta_j^l.ravel():
  X^0 = x, X^{l+1} = X^l + (1/(L N)) sum_j sigma(X^l theta_j^l^T), f = X^L;
  with its small-theta expansions X_(1), X_(2) (`wide_resnet_expansion`).
* Multilayer mean-field network, H >= 2 hidden layers of width N, no biases, rows
  theta (N, d + (H - 1) N + 1) = (W1[j], U2[j, :], ..., UH[j, :], a_j):
  h_1 = x W1^T, h_{l+1} = sigma(h_l) U_{l+1} / sqrt(N), f = c_out sigma(h_H) a,
  c_out = 1/N (mean_field) or 1/sqrt(N) (ntk).
"""

from __future__ import annotations

import numpy as np

_LOG2 = float(np.log(2.0))


def _tanh(z):
    return np.tanh(z)


def _dtanh(z):
    t = np.tanh(z)
    return 1.0 - t * t


def _softplus_shifted(z):
    # log(1 + e^z) - log 2, stable for large |z|
    return np.logaddexp(0.0, z) - _LOG2


def _dsoftplus_shifted(z):
    # e^z / (1 + e^z), stable for large |z|
    return np.exp(-np.logaddexp(0.0, -z))


ACTIVATIONS = {
    "tanh": (_tanh, _dtanh),
    "softplus_shifted": (_softplus_shifted, _dsoftplus_shifted),
}


def activation(name: str):
    """(sigma, sigma') for ``name`` in `ACTIVATIONS`."""
    return ACTIVATIONS[name]


def square_risk(f, y):
    """R = (1/(2n)) sum_i |f_i - y_i|^2 for f, y (n,) or (n, d)."""
    r = np.asarray(f, np.float64) - np.asarray(y, np.float64)
    return 0.5 * float(np.sum(r * r)) / r.shape[0]


# --------------------------------------------------------------------- ensemble ResNet
def _ensemble_matrices(theta, d, depth):
    theta = np.asarray(theta, np.float64)
    n_particles = theta.shape[0]
    assert theta.shape[1] == depth * d * d, theta.shape
    return theta.reshape(n_particles, depth, d, d)  # T[j, l] = theta_j^l


def ensemble_resnet_forward(theta, x, depth, act="tanh"):
    """(f (n, d), cache): X^l of every particle (N, n, d) and pre-activations Z^l."""
    sigma, _ = activation(act)
    x = np.asarray(x, np.float64)
    d = x.shape[1]
    T = _ensemble_matrices(theta, d, depth)
    N = T.shape[0]
    X = np.broadcast_to(x, (N,) + x.shape).copy()  # (N, n, d)
    xs, zs = [], []
    for layer in range(depth):
        # Z[j, i, k] = sum_m X[j, i, m] theta_j^l[k, m]
        Z = np.einsum("jim,jkm->jik", X, T[:, layer])
        xs.append(X)
        zs.append(Z)
        X = X + sigma(Z) / depth
    f = X.mean(axis=0)
    return f, {"T": T, "xs": xs, "zs": zs, "XL": X}


def ensemble_resnet_predict(theta, x, depth, act="tanh"):
    return ensemble_resnet_forward(theta, x, depth, act)[0]


def ensemble_resnet_risk(theta, x, y, depth, act="tanh"):
    return square_risk(ensemble_resnet_predict(theta, x, depth, act), y)


def ensemble_resnet_grad(theta, x, y, depth, act="tanh"):
    """(R, dR/dtheta (N, L d d)) by manual backpropagation."""
    _, dsigma = activation(act)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = x.shape[0]
    f, c = ensemble_resnet_forward(theta, x, depth, act)
    T = c["T"]
    N = T.shape[0]
    G = np.broadcast_to((f - y) / (n * N), (N,) + f.shape).copy()  # dR/dX^L_j
    dT = np.zeros_like(T)
    for layer in reversed(range(depth)):
        X, Z = c["xs"][layer], c["zs"][layer]
        dZ = G * dsigma(Z) / depth  # (N, n, d)
        dT[:, layer] = np.einsum("jik,jim->jkm", dZ, X)
        G = G + np.einsum("jik,jkm->jim", dZ, T[:, layer])
    return square_risk(f, y), dT.reshape(N, -1)


def ensemble_resnet_velocity(theta, x, y, depth, act="tanh"):
    """(v = -N dR/dtheta, R)."""
    R, g = ensemble_resnet_grad(theta, x, y, depth, act)
    return -g.shape[0] * g, R


# ------------------------------------------------------------------------- wide ResNet
def _wide_matrices(theta, d, depth):
    theta = np.asarray(theta, np.float64)
    rows = theta.shape[0]
    assert theta.shape[1] == d * d and rows % depth == 0, theta.shape
    return theta.reshape(depth, rows // depth, d, d)  # T[l, j] = theta_j^l (row l N + j)


def wide_resnet_forward(theta, x, depth, act="tanh"):
    """(f = X^L (n, d), cache): X^l (n, d) and pre-activations Z^l (N, n, d)."""
    sigma, _ = activation(act)
    x = np.asarray(x, np.float64)
    d = x.shape[1]
    T = _wide_matrices(theta, d, depth)
    N = T.shape[1]
    X = x.copy()
    xs, zs = [], []
    for layer in range(depth):
        Z = np.einsum("im,jkm->jik", X, T[layer])  # (N, n, d)
        xs.append(X)
        zs.append(Z)
        X = X + sigma(Z).sum(axis=0) / (depth * N)
    return X, {"T": T, "xs": xs, "zs": zs}


def wide_resnet_predict(theta, x, depth, act="tanh"):
    return wide_resnet_forward(theta, x, depth, act)[0]


def wide_resnet_risk(theta, x, y, depth, act="tanh"):
    return square_risk(wide_resnet_predict(theta, x, depth, act), y)


def wide_resnet_grad(theta, x, y, depth, act="tanh"):
    """(R, dR/dtheta (L N, d d)) by manual backpropagation."""
    _, dsigma = activation(act)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = x.shape[0]
    f, c = wide_resnet_forward(theta, x, depth, act)
    T = c["T"]
    N = T.shape[1]
    G = (f - y) / n  # dR/dX^L (n, d)
    dT = np.zeros_like(T)
    for layer in reversed(range(depth)):
        X, Z = c["xs"][layer], c["zs"][layer]
        dZ = G[None] * dsigma(Z) / (depth * N)  # (N, n, d)
        dT[layer] = np.einsum("jik,im->jkm", dZ, X)
        G = G + np.einsum("jik,jkm->im", dZ, T[layer])
    return square_risk(f, y), dT.reshape(depth * N, -1)


def wide_resnet_velocity(theta, x, y, depth, act="tanh"):
    """(v = -L N dR/dtheta, R)."""
    R, g = wide_resnet_grad(theta, x, y, depth, act)
    return -g.shape[0] * g, R


def wide_resnet_expansion(theta, x, depth, order, act="tanh"):
    """X_(1) or X_(2), the small-theta expansions of the wide ResNet output:

    X_(1) = x + (1/L) sum_a S_a(x),  S_a(x) = (1/N) sum_j sigma(x theta_j^a^T),
    X_(2) = X_(1) + (1/L^2) sum_{a<b} (1/N) sum_j sigma'(x theta_j^b^T) * (S_a(x) theta_j^b^T).
    """
    sigma, dsigma = activation(act)
    x = np.asarray(x, np.float64)
    d = x.shape[1]
    T = _wide_matrices(theta, d, depth)
    Z = np.einsum("im,ljkm->ljik", x, T)  # (L, N, n, d): x theta_j^a^T
    S = sigma(Z).mean(axis=1)  # (L, n, d)
    out = x + S.sum(axis=0) / depth
    if order == 1:
        return out
    assert order == 2, order
    D = dsigma(Z)  # (L, N, n, d)
    second = np.zeros_like(x)
    for b in range(depth):
        if b == 0:
            continue
        before = S[:b].sum(axis=0)  # sum_{a<b} S_a (n, d)
        lin = np.einsum("im,jkm->jik", before, T[b])  # (N, n, d)
        second += (D[b] * lin).mean(axis=0)
    return out + second / depth**2


# -------------------------------------------------------------------------- multilayer
C_OUT = {"mean_field": lambda N: 1.0 / N, "ntk": lambda N: 1.0 / np.sqrt(N)}
VELOCITY_SCALE = {"mean_field": lambda N: float(N), "ntk": lambda N: 1.0}


def multilayer_split(theta, d, hidden):
    """(W1 (N, d), [U2, ..., UH] each (N, N), a (N,)) from rows (N, d + (H-1) N + 1)."""
    theta = np.asarray(theta, np.float64)
    N = theta.shape[0]
    assert theta.shape[1] == d + (hidden - 1) * N + 1, theta.shape
    W1 = theta[:, :d]
    Us = [theta[:, d + k * N : d + (k + 1) * N] for k in range(hidden - 1)]
    return W1, Us, theta[:, -1]


def multilayer_join(W1, Us, a):
    return np.concatenate([W1, *Us, a[:, None]], axis=1)


def multilayer_forward(theta, x, hidden, act="tanh", scaling="mean_field"):
    """(f (n,), cache): pre-activations h_l (n, N) and activations sigma(h_l)."""
    sigma, _ = activation(act)
    x = np.asarray(x, np.float64)
    W1, Us, a = multilayer_split(theta, x.shape[1], hidden)
    N = W1.shape[0]
    hs = [x @ W1.T]
    ss = [sigma(hs[0])]
    for U in Us:
        hs.append(ss[-1] @ U / np.sqrt(N))
        ss.append(sigma(hs[-1]))
    f = C_OUT[scaling](N) * ss[-1] @ a
    return f, {"W1": W1, "Us": Us, "a": a, "hs": hs, "ss": ss, "x": x}


def multilayer_predict(theta, x, hidden, act="tanh", scaling="mean_field"):
    return multilayer_forward(theta, x, hidden, act, scaling)[0]


def multilayer_risk(theta, x, y, hidden, act="tanh", scaling="mean_field"):
    return square_risk(multilayer_predict(theta, x, hidden, act, scaling), y)


def multilayer_grad(theta, x, y, hidden, act="tanh", scaling="mean_field"):
    """(R, dR/dtheta (N, d + (H-1) N + 1)) by manual backpropagation."""
    _, dsigma = activation(act)
    y = np.asarray(y, np.float64)
    f, c = multilayer_forward(theta, x, hidden, act, scaling)
    W1, Us, a, hs, ss = c["W1"], c["Us"], c["a"], c["hs"], c["ss"]
    N = W1.shape[0]
    n = f.shape[0]
    c_out = C_OUT[scaling](N)
    g = (f - y) / n  # dR/df (n,)
    da = c_out * ss[-1].T @ g
    ds = c_out * np.outer(g, a)  # dR/dsigma(h_H) (n, N)
    dh = ds * dsigma(hs[-1])
    dUs = [None] * len(Us)
    for k in reversed(range(len(Us))):  # U = Us[k] maps layer k+1 to layer k+2 (1-based)
        dUs[k] = ss[k].T @ dh / np.sqrt(N)
        ds = dh @ Us[k].T / np.sqrt(N)
        dh = ds * dsigma(hs[k])
    dW1 = dh.T @ c["x"]
    return square_risk(f, y), multilayer_join(dW1, dUs, da)


def multilayer_velocity(theta, x, y, hidden, act="tanh", scaling="mean_field"):
    """(v = -c dR/dtheta, R), c = N (mean_field) or 1 (ntk)."""
    R, g = multilayer_grad(theta, x, y, hidden, act, scaling)
    return -VELOCITY_SCALE[scaling](g.shape[0]) * g, R


# ----------------------------------------------------------------------- finite differences
def central_difference(fun, theta, h=1e-6):
    """d fun / d theta by central differences, one entry at a time."""
    theta = np.asarray(theta, np.float64)
    grad = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        plus = theta.copy()
        minus = theta.copy()
        plus[idx] += h
        minus[idx] -= h
        grad[idx] = (fun(plus) - fun(minus)) / (2.0 * h)
    return grad
