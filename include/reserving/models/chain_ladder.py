"""Chain ladder with Mack (1993) standard errors, through chainladder's ``Development`` and ``MackChainladder``.

A segment too young for development factors of its own (a new line: every cell at one development age, e.g. a
single cell) would crash chainladder with an IndexError. It is reserved by the chain ladder with factors borrowed
from the rest of the book (volume-weighted over every other segment, no tail) and has no standard error; the fit
logs which segments were and ``young_segments_`` names them for the report.
"""

from __future__ import annotations

import logging
from typing import Any

import chainladder as cl
import numpy as np
import pandas as pd

from include.reserving import cells as cellsmod
from include.reserving.models.base import PREDICTION_COLUMNS, ReservingModel

log = logging.getLogger(__name__)


def _paid_triangle(cells: pd.DataFrame) -> cl.Triangle:
    return cellsmod.to_triangle(cells, columns=["paid"])["paid"]


def _long(values: cl.Triangle) -> pd.DataFrame:
    """A one-column chainladder triangle indexed by segment as a frame ``segment, origin, development, value``."""
    frame = values.to_frame(keepdims=True).reset_index()
    (value_column,) = [c for c in frame.columns if c not in ("segment", "origin", "development")]
    frame = frame.rename(columns={value_column: "value"})
    frame["origin"] = [o.date() for o in pd.to_datetime(frame["origin"])]
    return frame


def _pooled_factors(cells: pd.DataFrame) -> pd.Series:
    """Volume-weighted age-to-age factors of all ``cells`` pooled, indexed by the age they develop from."""
    sums = cellsmod.link_ratios(cells).groupby("development")[["value", "value_next"]].sum()
    return (sums["value_next"] / sums["value"].where(sums["value"] > 0)).fillna(1.0).rename("ldf")


class ChainLadder(ReservingModel):
    """Paid chain ladder per segment with Mack standard errors.

    Parameters
    ----------
    average : {"volume", "simple", "regression", "geometric"}
        Link ratio average (chainladder ``Development(average=...)``); volume-weighted by default.
    n_periods : int
        Latest origins used per age-to-age factor; -1 uses all.
    sigma_interpolation : {"log-linear", "mack"}
        How the last Mack sigma is extrapolated; ``"mack"`` reproduces Mack (1993).
    tail : dict, optional
        Keyword arguments of ``chainladder.TailCurve`` (e.g. ``{"curve": "exponential"}``); no tail when omitted.

    Attributes
    ----------
    training_cells_ : pandas.DataFrame
        The cells the model was fitted on.
    segments_ : list of str
        Fitted segments, sorted.
    groups_ : list of list of str
        Segments sharing one triangle (those with the same origins).
    development_ : list of chainladder.Development
        Fitted development per group (age-to-age factors per segment in ``development_[i].ldf_``).
    tail_ : list of chainladder.TailCurve or None
        Fitted tail per group.
    mack_ : list of chainladder.MackChainladder
        Mack chain ladder per group on its training triangle.
    ldf_ : pandas.DataFrame
        Age-to-age factors: ``segment, development, ldf`` (factor from ``development`` to the next age).
    young_segments_ : list of str
        Segments with a single development age, reserved with ``borrowed_ldf_`` (see the module docstring).
    borrowed_ldf_ : pandas.Series
        The book's volume-weighted age-to-age factors by age, over the segments old enough for their own.

    Examples
    --------
    >>> import chainladder as cl
    >>> raa = cellsmod.from_triangle(cl.load_sample("raa"), columns={"values": "paid"}, segment="raa")
    >>> round(ChainLadder().fit(raa).ultimates(raa)["unpaid"].sum())
    52135
    """

    method = "chain_ladder"

    def __init__(
        self,
        *,
        average: str = "volume",
        n_periods: int = -1,
        sigma_interpolation: str = "log-linear",
        tail: dict[str, Any] | None = None,
    ):
        self.average = average
        self.n_periods = n_periods
        self.sigma_interpolation = sigma_interpolation
        self.tail = tail

    @classmethod
    def search_grid(cls) -> list[dict[str, Any]]:
        """All origins volume-weighted, the latest five origins, and simple averages."""
        return [
            {"method": cls.method, "params": {}},
            {"method": cls.method, "params": {"n_periods": 5}},
            {"method": cls.method, "params": {"average": "simple"}},
        ]

    def includes_tail(self) -> bool:
        return self.tail is not None

    def complexity(self) -> float:
        """0 for the plain chain ladder (the fallback every actuary reproduces), 1 for a variant of it."""
        return 0.0 if self.get_spec() == ChainLadder().get_spec() else 1.0

    def _develop(self, group: int, triangle: cl.Triangle) -> cl.Triangle:
        developed = self.development_[group].transform(triangle)
        tail = self.tail_[group]
        return tail.transform(developed) if tail is not None else developed

    # chainladder's log-linear sigma extrapolation overflows on short or flat triangles; it then reports an
    # undefined (NaN/inf) standard error, which is the right answer, so numpy's warnings are only noise here.
    @np.errstate(all="ignore")
    def fit(self, cells: pd.DataFrame) -> ChainLadder:
        """Fit age-to-age factors, tail and Mack parameters per segment on ``cells``; returns ``self``."""
        cells = cellsmod.normalise(cells)
        self.young_segments_ = cellsmod.young_segments(cells)
        established = cells[~cells["segment"].isin(self.young_segments_)]
        self.borrowed_ldf_ = _pooled_factors(established)
        if self.young_segments_:
            log.warning(
                "segments %s have a single development age: reserved with age-to-age factors borrowed from the rest "
                "of the book, without a standard error",
                self.young_segments_,
            )
        # Segments with the same origins share one multi-index triangle (chainladder estimates each index on its own,
        # and one triangle for many segments is much faster); segments covering other origin periods get their own
        # triangle, since a shared origin grid would distort them.
        origin_sets = established.groupby("segment")["origin"].agg(lambda o: tuple(sorted(set(o))))
        self.groups_ = [sorted(members.index) for _, members in origin_sets.groupby(origin_sets, sort=True)]
        self.development_, self.tail_, self.mack_ = [], [], []
        ldfs = [
            pd.DataFrame(
                {"segment": segment, "development": self.borrowed_ldf_.index, "ldf": self.borrowed_ldf_.to_numpy()}
            )
            for segment in self.young_segments_
        ]
        for group, segments in enumerate(self.groups_):
            triangle = _paid_triangle(established[established["segment"].isin(segments)])
            development = cl.Development(
                average=self.average, n_periods=self.n_periods, sigma_interpolation=self.sigma_interpolation
            ).fit(triangle)
            self.development_.append(development)
            self.tail_.append(cl.TailCurve(**self.tail).fit(development.transform(triangle)) if self.tail else None)
            self.mack_.append(cl.MackChainladder().fit(self._develop(group, triangle)))
            ldfs.append(_long(development.ldf_).rename(columns={"value": "ldf"}))
        self.segments_ = sorted([*self.young_segments_, *(s for segments in self.groups_ for s in segments)])
        columns = ["segment", "development", "ldf"]
        self.ldf_ = pd.concat([f[columns] for f in ldfs], ignore_index=True) if ldfs else pd.DataFrame(columns=columns)
        self.training_cells_ = cells
        return self

    @np.errstate(all="ignore")
    def _mack(self, cells: pd.DataFrame) -> list[tuple[list[str], cl.Triangle, cl.MackChainladder]]:
        """Mack chain ladder with the fitted factors for each group of segments present in ``cells``.

        Returns (segments present, triangle, Mack) per group. A group only partly present in ``cells`` is completed
        with its training cells, since the fitted estimators expect the group's whole index.
        """
        self._check_fitted()
        unknown = sorted(set(cells["segment"]) - set(self.segments_))
        if unknown:
            raise ValueError(f"cells hold segments {unknown} the model was not fitted on")
        out = []
        for group, segments in enumerate(self.groups_):
            present = sorted(set(segments) & set(cells["segment"]))
            if not present:
                continue
            training = self.training_cells_[self.training_cells_["segment"].isin(segments)]
            group_cells = pd.concat(
                [cells[cells["segment"].isin(present)], training[~training["segment"].isin(present)]]
            )
            group_cells = cellsmod.normalise(group_cells)
            triangle = _paid_triangle(group_cells)
            if group_cells.equals(training.reset_index(drop=True)):
                out.append((present, triangle, self.mack_[group]))
            else:
                # MackChainladder.predict fails to broadcast in chainladder 0.10; fitting Mack on the triangle
                # transformed by the fitted Development and tail applies the learned factors and sigmas instead.
                out.append((present, triangle, cl.MackChainladder().fit(self._develop(group, triangle))))
        return out

    def predict(self, cells: pd.DataFrame) -> pd.DataFrame:
        """Completed square of cumulative paid.

        Returns
        -------
        pandas.DataFrame
            Columns ``segment, origin, development, paid, observed``: every age of the segment's triangle for every
            origin of ``cells``, plus one row at ``development == ULTIMATE_DEVELOPMENT`` holding the ultimate (tail
            included); ``observed`` is True for cells present in ``cells``.
        """
        self._check_fitted()
        cells = cellsmod.normalise(cells)
        young = cells[cells["segment"].isin(self.young_segments_)]
        frames = [self._borrowed_square(young)] if len(young) else []
        for segments, triangle, mack in self._mack(cells):
            full = _long(mack.full_triangle_)
            ages = [*[int(a) for a in triangle.development], cellsmod.ULTIMATE_DEVELOPMENT]
            origins = cells.loc[cells["segment"].isin(segments), ["segment", "origin"]].drop_duplicates()
            grid = origins.merge(pd.DataFrame({"development": ages}), how="cross")
            frames.append(grid.merge(full[[*cellsmod.KEY_COLUMNS, "value"]], how="left", on=cellsmod.KEY_COLUMNS))
        grid = pd.concat(frames).merge(cells[[*cellsmod.KEY_COLUMNS, "paid"]], how="left", on=cellsmod.KEY_COLUMNS)
        grid["observed"] = grid["paid"].notna()
        # chainladder stores zeros as empty, so a missing projection of an observed origin is zero
        grid["paid"] = grid["paid"].astype(float).fillna(grid["value"].astype(float)).fillna(0.0)
        return grid[PREDICTION_COLUMNS].sort_values(cellsmod.KEY_COLUMNS).reset_index(drop=True)

    def _borrowed_square(self, cells: pd.DataFrame) -> pd.DataFrame:
        """Young segments' completed squares: each origin's latest paid developed by the borrowed factors."""
        factors = self.borrowed_ldf_
        ages = sorted(set(self.training_cells_["development"].astype(int)))
        rows = []
        for (segment, origin), group in cells.groupby(["segment", "origin"], sort=True):
            latest_age, latest_paid = int(group["development"].iloc[-1]), float(group["paid"].iloc[-1])
            observed = dict(zip(group["development"].astype(int), group["paid"].astype(float), strict=True))
            for age in sorted({*observed, *ages}):
                between = factors[(factors.index >= latest_age) & (factors.index < age)]
                projected = latest_paid * float(between.prod()) if age > latest_age else np.nan
                rows.append((segment, origin, age, observed.get(age, projected)))
            ultimate = latest_paid * float(factors[factors.index >= latest_age].prod())
            rows.append((segment, origin, cellsmod.ULTIMATE_DEVELOPMENT, ultimate))
        frame = pd.DataFrame(rows, columns=[*cellsmod.KEY_COLUMNS, "value"])
        return frame.astype({"development": "int64", "value": "float64"})

    def _std_err(self, cells: pd.DataFrame, prediction: pd.DataFrame) -> pd.Series:
        frames = [pd.DataFrame(columns=["segment", "origin", "value"])]
        for _, _, mack in self._mack(cells):
            std_err = _long(mack.mack_std_err_)
            frames.append(std_err[std_err["development"] == std_err["development"].max()])
        std_err = pd.concat(frames).set_index(["segment", "origin"])["value"].astype(float)
        origins = pd.MultiIndex.from_frame(cells[["segment", "origin"]].drop_duplicates())
        # a fully developed origin has a zero standard error, which chainladder stores as empty; young segments
        # (borrowed factors) have none
        young = origins.get_level_values("segment").isin(self.young_segments_)
        return std_err.reindex(origins).fillna(0.0).where(~young, np.nan)

    def _total_std_err(self, cells: pd.DataFrame, ultimates: pd.DataFrame) -> pd.Series:
        """Mack's standard error of the total reserve, which allows for the origins' shared factor estimates."""
        totals = [pd.Series(np.nan, index=sorted(set(cells["segment"]) & set(self.young_segments_)), dtype=float)]
        for _, triangle, mack in self._mack(cells):
            values = np.asarray(mack.total_mack_std_err_, dtype=float).ravel()
            totals.append(pd.Series(values, index=[str(s) for s in triangle.index.iloc[:, 0]]))
        return pd.concat(totals)
