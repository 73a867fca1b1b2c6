"""Exact path-dependent TreeSHAP for LightGBM text models, fast enough to serve.

For one leaf with value ``v`` whose path tests the distinct features ``P`` (``d`` of
them), let ``z_j`` be the share of training rows that feature ``j``'s splits on the path
keep (the product of child/parent counts) and ``o_j`` whether the row satisfies every
split on ``j``. The leaf adds to feature ``i``'s Shapley value (Lundberg et al. 2020;
Yu et al. 2022, "Linear TreeSHAP")

    v * (o_i - z_i) * integral_0^1 prod_{j != i} (o_j t + (1 - t) z_j) dt.

The integrand is a polynomial of degree ``d - 1``, so Gauss-Legendre quadrature with
``q = ceil(d / 2)`` nodes ``t_k`` integrates it exactly. Write ``A`` for the satisfied
features, ``R_jk = (t_k + (1 - t_k) z_j) / ((1 - t_k) z_j)`` and
``W_k = -v w_k prod_j ((1 - t_k) z_j) / (1 - t_k)``. Then

    N(A) = sum_k W_k prod_{j in A} R_jk

goes to every unsatisfied feature, and ``-(1 - z_i) / z_i * N(A - {i})`` to every
satisfied feature ``i``. The row enters only through ``A``, a bit mask that one pass over
the nodes computes for every leaf at once. Shallow leaves (``d <= TABLE_DEPTH``) store
``N`` for all ``2^d`` masks, so a row costs ``d`` lookups (FastTreeSHAP v2's idea);
deeper ones store ``W`` and ``R`` and evaluate the sum, four nodes side by side. Either
way a leaf costs ``O(d)`` or ``O(d q)`` per row, against the ``O(d^2)`` path extension of
the classic algorithm, with no division and no data-dependent branch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from keel.errors import IntegrityError

# LightGBM's decision_type bits, and the flags the kernel reads per node.
_CATEGORICAL, _DEFAULT_LEFT = 1, 2
_MISSING_ZERO, _MISSING_NAN = 1, 2
_IS_CATEGORICAL, _NAN_LEFT, _ZERO_IS_MISSING, _MISSING_LEFT = 1, 2, 4, 8
TABLE_DEPTH = 6  # leaves with at most this many features get a table of N(A) for every A
_LANES = 4  # quadrature nodes computed side by side in the kernel
_PARALLEL_FROM = 64  # rows; below this a single thread answers sooner


@dataclass(frozen=True)
class TreeShap:
    """A LightGBM ensemble compiled into flat arrays for the TreeSHAP kernels."""

    n_features: int
    expected_value: float
    nodes: tuple[np.ndarray, ...]
    leaves: tuple[int | np.ndarray, ...]  # the table depth, then the per-leaf arrays

    @classmethod
    def from_model_text(cls, text: str, *, table_depth: int = TABLE_DEPTH) -> TreeShap:
        """Compile LightGBM's text model (``Booster.model_to_string()``)."""
        return _compile(*_parse_model(text), table_depth=table_depth)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """SHAP values of the raw margin, shape ``(rows, n_features + 1)``.

        The last column is the base value.
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"expected a 2-d array with {self.n_features} columns, got shape {X.shape}"
            )
        out = np.zeros((X.shape[0], self.n_features + 1))
        kernel = _explain_parallel if X.shape[0] >= _PARALLEL_FROM else _explain_serial
        kernel(X, out, *self.nodes, *self.leaves)
        out[:, -1] = self.expected_value
        return out


@dataclass
class _Tree:
    split_feature: np.ndarray
    threshold: np.ndarray
    decision_type: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf_value: np.ndarray
    leaf_count: np.ndarray
    internal_count: np.ndarray
    cat_boundaries: np.ndarray
    cat_threshold: np.ndarray


def _parse_model(text: str) -> tuple[int, list[_Tree]]:
    """The number of features and the trees of a LightGBM text model."""
    header, *blocks = text.split("\nTree=")
    fields = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
    if int(fields.get("num_tree_per_iteration", "1")) != 1:
        raise IntegrityError(
            "TreeSHAP here explains single-output (binary or regression) LightGBM models only"
        )
    n_features = int(fields["max_feature_idx"]) + 1
    trees = []
    for block in blocks:
        body = block.split("\nend of trees")[0]
        kv = dict(line.split("=", 1) for line in body.splitlines()[1:] if "=" in line)
        if kv.get("is_linear", "0") != "0":
            raise IntegrityError("linear-tree LightGBM models have no path-dependent TreeSHAP")

        def arr(key: str, dtype: type, kv: dict[str, str] = kv) -> np.ndarray:
            raw = kv.get(key, "").strip()
            return np.array(raw.split(" ") if raw else [], dtype=dtype)

        trees.append(
            _Tree(
                split_feature=arr("split_feature", np.int32),
                threshold=arr("threshold", np.float64),
                decision_type=arr("decision_type", np.int32),
                left=arr("left_child", np.int32),
                right=arr("right_child", np.int32),
                leaf_value=arr("leaf_value", np.float64),
                leaf_count=arr("leaf_count", np.float64),
                internal_count=arr("internal_count", np.float64),
                cat_boundaries=arr("cat_boundaries", np.int32),
                cat_threshold=arr("cat_threshold", np.uint32),
            )
        )
    return n_features, trees


def _compile(n_features: int, trees: list[_Tree], *, table_depth: int) -> TreeShap:
    """Flatten trees into node arrays and per-leaf blocks of quadrature factors.

    Internal nodes are laid out tree by tree in breadth-first order, so one forward pass
    over them sees every parent before its children. Each node carries the slot its
    feature takes on the paths through it (its first use on the path from the root).
    """
    node: dict[str, list] = {
        k: []
        for k in ("feature", "threshold", "flags", "cat_start", "cat_len", "slot", "left", "right")
    }
    roots: list[int] = []
    bitset: list[np.ndarray] = []
    leaf_value: list[float] = []
    leaf_depth: list[int] = []
    slot_start = [0]
    slot_feature: list[int] = []
    slot_z: list[float] = []
    expected = 0.0
    bitset_size = 0
    for tree in trees:
        if len(tree.split_feature) == 0:  # a single leaf: all of it is base value
            expected += float(tree.leaf_value[0])
            continue
        order = _breadth_first(tree)
        position = {k: len(node["feature"]) + i for i, k in enumerate(order)}
        leaf_base = len(leaf_value)
        roots.append(position[0])
        for k in order:
            dt = int(tree.decision_type[k])
            node["feature"].append(int(tree.split_feature[k]))
            node["flags"].append(_node_flags(dt, float(tree.threshold[k])))
            node["slot"].append(0)
            for side, child in (("left", tree.left[k]), ("right", tree.right[k])):
                node[side].append(
                    position[int(child)] if child >= 0 else -(leaf_base + ~int(child)) - 1
                )
            if dt & _CATEGORICAL:
                cat = int(tree.threshold[k])
                words = tree.cat_threshold[tree.cat_boundaries[cat] : tree.cat_boundaries[cat + 1]]
                node["cat_start"].append(bitset_size)
                node["cat_len"].append(len(words))
                node["threshold"].append(0.0)
                bitset.append(words)
                bitset_size += len(words)
            else:
                node["cat_start"].append(0)
                node["cat_len"].append(0)
                node["threshold"].append(float(tree.threshold[k]))
        total = tree.internal_count[0]
        for leaf, path in _leaf_paths(tree):
            slots: dict[int, int] = {}
            zs: list[float] = []
            for k, went_left in path:
                child = tree.left[k] if went_left else tree.right[k]
                child_count = tree.leaf_count[~child] if child < 0 else tree.internal_count[child]
                feature = int(tree.split_feature[k])
                if feature not in slots:
                    slots[feature] = len(zs)
                    zs.append(1.0)
                zs[slots[feature]] *= child_count / tree.internal_count[k]
                node["slot"][position[k]] = slots[feature]
            value = float(tree.leaf_value[leaf])
            expected += value * tree.leaf_count[leaf] / total
            leaf_value.append(value)
            leaf_depth.append(len(zs))
            slot_feature.extend(slots)
            slot_z.extend(zs)
            slot_start.append(len(slot_feature))
    z = np.array(slot_z, dtype=np.float64)
    if np.any(z <= 0):
        raise IntegrityError(
            "the LightGBM model has a node with no training rows; TreeSHAP needs positive counts"
        )
    # Leaves sorted by depth: the kernel's short inner loops then keep one trip count for long runs.
    depth = np.array(leaf_depth, dtype=np.int32)
    by_depth = np.argsort(depth, kind="stable")
    rank = np.empty_like(by_depth)
    rank[by_depth] = np.arange(len(by_depth))
    starts = np.array(slot_start, dtype=np.int64)
    features = np.array(slot_feature, dtype=np.int32)
    slot_parts, block_parts = [], []
    for leaf in by_depth:
        slot_parts.append(features[starts[leaf] : starts[leaf + 1]])
        block_parts.append(
            _leaf_block(float(leaf_value[leaf]), z[starts[leaf] : starts[leaf + 1]], table_depth)
        )
    n_nodes = len(node["feature"])
    children = [np.array(node[side], dtype=np.int64) for side in ("left", "right")]
    left, right = (
        np.where(c >= 0, c, n_nodes + rank[np.maximum(-c - 1, 0)]).astype(np.int32)
        for c in children
    )
    flags = np.array(node["flags"], dtype=np.int32)
    nodes = (
        np.array(node["feature"], dtype=np.int32),
        np.array(node["threshold"], dtype=np.float64),
        flags,
        np.flatnonzero(flags & _IS_CATEGORICAL).astype(np.int32),
        np.array(node["cat_start"], dtype=np.int32),
        np.array(node["cat_len"], dtype=np.int32),
        np.concatenate(bitset).astype(np.uint32) if bitset else np.zeros(1, dtype=np.uint32),
        np.array(node["slot"], dtype=np.int32),
        left,
        right,
        np.array(roots, dtype=np.int32),
    )
    leaves = (
        table_depth,
        depth[by_depth],
        _offsets(slot_parts),
        np.concatenate(slot_parts) if slot_parts else np.zeros(0, dtype=np.int32),
        _offsets(block_parts) + _LANES,
        np.concatenate([np.ones(_LANES), *block_parts]),
    )
    return TreeShap(n_features, expected, nodes, leaves)


def _leaf_block(value: float, z: np.ndarray, table_depth: int) -> np.ndarray:
    """One leaf's numbers for the kernel.

    A shallow leaf gets ``N(A)`` for all ``2^d`` patterns, then ``-(1 - z_i) / z_i``. A
    deeper one gets ``W``, ``R_j`` and ``-(1 - z_i) / z_i / R_i`` for each group of four
    quadrature nodes, padded to a multiple of four with ``W = 0``, ``R = 1``, which add nothing.
    """
    q = (len(z) + 1) // 2
    t, w = np.polynomial.legendre.leggauss(q)
    t, w = (t + 1.0) / 2.0, w / 2.0
    base = (1.0 - t) * z[:, None]  # (d, q)
    ratio = (t + base) / base
    weights = -value * w * np.prod(base, axis=0) / (1.0 - t)
    coef = -(1.0 - z) / z
    if len(z) <= table_depth:
        patterns = (np.arange(1 << len(z))[:, None] >> np.arange(len(z))) & 1  # (2^d, d)
        chosen = np.where(patterns[:, :, None] == 1, ratio[None, :, :], 1.0)  # (2^d, d, q)
        return np.concatenate([np.prod(chosen, axis=1) @ weights, coef])
    satisfied = coef[:, None] / ratio
    pad = -q % _LANES
    weights = np.pad(weights, (0, pad))
    ratio = np.pad(ratio, ((0, 0), (0, pad)), constant_values=1.0)
    satisfied = np.pad(satisfied, ((0, 0), (0, pad)))
    groups = [
        np.concatenate(
            [
                weights[g : g + _LANES],
                ratio[:, g : g + _LANES].ravel(),
                satisfied[:, g : g + _LANES].ravel(),
            ]
        )
        for g in range(0, q + pad, _LANES)
    ]
    return np.concatenate(groups)


def _offsets(parts: list[np.ndarray]) -> np.ndarray:
    """Start offsets of consecutive parts, with the total at the end."""
    return np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)


def _breadth_first(tree: _Tree) -> list[int]:
    """The tree's internal nodes, parents before children."""
    order, queue = [], [0]
    while queue:
        k = queue.pop(0)
        order.append(k)
        queue.extend(int(c) for c in (tree.left[k], tree.right[k]) if c >= 0)
    return order


def _node_flags(decision_type: int, threshold: float) -> int:
    """The kernel's flags for one split, from LightGBM's decision_type.

    See LightGBM's tree.h: NumericalDecision.
    """
    if decision_type & _CATEGORICAL:
        return _IS_CATEGORICAL  # NaN goes right
    missing = (decision_type >> 2) & 3
    default_left = bool(decision_type & _DEFAULT_LEFT)
    if missing == _MISSING_NAN:
        nan_left = default_left
    elif missing == _MISSING_ZERO:
        nan_left = default_left  # NaN is read as 0.0, which is "missing"
    else:
        nan_left = threshold >= 0.0  # NaN is read as 0.0 and compared
    flags = _NAN_LEFT * nan_left
    if missing == _MISSING_ZERO:
        flags |= _ZERO_IS_MISSING | _MISSING_LEFT * default_left
    return flags


def _leaf_paths(tree: _Tree) -> list[tuple[int, list[tuple[int, bool]]]]:
    """Each leaf with its path from the root: (internal node, went left)."""
    out = []
    stack: list[tuple[int, list[tuple[int, bool]]]] = [(0, [])]
    while stack:
        k, path = stack.pop()
        for child, went_left in ((tree.right[k], False), (tree.left[k], True)):
            step = [*path, (k, went_left)]
            if child < 0:
                out.append((~int(child), step))
            else:
                stack.append((int(child), step))
    return sorted(out)


@numba.njit(cache=True, inline="always")
def _numerical_left(fval, flag, threshold):  # pragma: no cover - jit
    """LightGBM's numerical split rule (tree.h: NumericalDecision), without branches."""
    is_nan = np.isnan(fval)
    zero = ((flag & 4) != 0) & (abs(fval) <= 1e-35)
    return (
        (is_nan & ((flag & 2) != 0))
        | (zero & ((flag & 8) != 0))
        | (~is_nan & ~zero & (fval <= threshold))
    )


@numba.njit(cache=True, inline="always")
def _categorical_left(fval, start, n_words, bitset):  # pragma: no cover - jit
    """LightGBM's categorical split rule: the category's bit in the split's bitset.

    NaN and negatives go right.
    """
    if np.isnan(fval) or fval <= -1.0:
        return False
    value = int(fval)
    return (value >> 5) < n_words and (bitset[start + (value >> 5)] >> (value & 31)) & 1 == 1


@numba.njit(cache=True)
def _explain_row(
    x,
    phi,
    go,
    masks,
    feature,
    threshold,
    flags,
    categorical,
    cat_start,
    cat_len,
    bitset,
    slot,
    left,
    right,
    roots,
    table_depth,
    depth,
    slot_start,
    slot_feature,
    block_start,
    blocks,
):  # pragma: no cover - jit
    """Add one row's contributions into ``phi`` (length n_features + 1)."""
    for k in range(len(feature)):
        go[k] = -np.int64(_numerical_left(x[feature[k]], flags[k], threshold[k]))
    for k in categorical:
        go[k] = -np.int64(_categorical_left(x[feature[k]], cat_start[k], cat_len[k], bitset))
    for r in roots:
        masks[r] = -1
    for k in range(len(feature)):  # parents come before children: one pass sets every path's mask
        keep = masks[k]
        drop = keep & ~(np.int64(1) << slot[k])
        masks[left[k]] = (keep & go[k]) | (drop & ~go[k])
        masks[right[k]] = (drop & go[k]) | (keep & ~go[k])
    n_nodes = len(feature)
    pick = np.empty(2)  # [unsatisfied, satisfied]: chosen by index, so no data-dependent branch
    for leaf in range(len(depth)):
        d = depth[leaf]
        mask = masks[n_nodes + leaf]
        first = slot_start[leaf]
        if d <= table_depth:  # leaves are sorted by depth: this branch is predictable
            at = block_start[leaf]
            size = 1 << d
            mask &= size - 1
            pick[0] = blocks[at + mask]
            for i in range(d):
                pick[1] = blocks[at + size + i] * blocks[at + (mask ^ (1 << i))]
                phi[slot_feature[first + i]] += pick[(mask >> i) & 1]
            continue
        for row in range(block_start[leaf], block_start[leaf + 1], _LANES * (1 + 2 * d)):
            # Four quadrature nodes side by side: P_k for each, then their shares of every feature.
            p0, p1, p2, p3 = blocks[row], blocks[row + 1], blocks[row + 2], blocks[row + 3]
            for j in range(d):
                at = (row + _LANES * (1 + j)) * (
                    (mask >> j) & 1
                )  # an unsatisfied feature reads blocks[0:4] = 1
                p0 *= blocks[at]
                p1 *= blocks[at + 1]
                p2 *= blocks[at + 2]
                p3 *= blocks[at + 3]
            pick[0] = (p0 + p1) + (p2 + p3)
            for i in range(d):
                at = row + _LANES * (1 + d + i)
                pick[1] = (p0 * blocks[at] + p1 * blocks[at + 1]) + (
                    p2 * blocks[at + 2] + p3 * blocks[at + 3]
                )
                phi[slot_feature[first + i]] += pick[(mask >> i) & 1]


@numba.njit(cache=True)
def _explain_rows(
    X,
    out,
    lo,
    hi,
    feature,
    threshold,
    flags,
    categorical,
    cat_start,
    cat_len,
    bitset,
    slot,
    left,
    right,
    roots,
    table_depth,
    depth,
    slot_start,
    slot_feature,
    block_start,
    blocks,
):  # pragma: no cover - jit
    """Rows ``lo..hi`` of ``X`` into ``out``, with their own scratch buffers."""
    go = np.empty(len(feature), dtype=np.int64)
    masks = np.empty(len(feature) + len(depth), dtype=np.int64)
    for r in range(lo, hi):
        _explain_row(
            X[r],
            out[r],
            go,
            masks,
            feature,
            threshold,
            flags,
            categorical,
            cat_start,
            cat_len,
            bitset,
            slot,
            left,
            right,
            roots,
            table_depth,
            depth,
            slot_start,
            slot_feature,
            block_start,
            blocks,
        )


@numba.njit(cache=True)
def _explain_serial(X, out, *model):  # pragma: no cover - jit
    _explain_rows(X, out, 0, X.shape[0], *model)


@numba.njit(parallel=True)  # parallel functions cannot be cached by numba
def _explain_parallel(X, out, *model):  # pragma: no cover - jit
    n_threads = numba.get_num_threads()
    chunk = (X.shape[0] + n_threads - 1) // n_threads
    for t in numba.prange(n_threads):
        _explain_rows(X, out, t * chunk, min((t + 1) * chunk, X.shape[0]), *model)
