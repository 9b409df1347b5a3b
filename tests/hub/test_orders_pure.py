"""Pure cores of issue 8: order states, the value ledger, ratings, quotes and geography."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from hub import geo, ledger, orders, quotes, ratings
from hub.errors import InvalidArgument, InvalidTransition

# -- orders ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("jobs", "state"), [
    ([], "placed"),
    (["queued", "offered"], "queued"),
    (["printing", "queued"], "queued"),
    (["printing", "done"], "printing"),
    (["printed", "done"], "printed"),
    (["done", "done"], "delivered"),
    (["done", "cancelled"], "delivered"),
    (["cancelled", "cancelled"], "cancelled"),
    (["done", "failed"], "failed"),
    (["lost_contact", "done"], "lost_contact"),
    (["outcome_unknown", "queued"], "outcome_unknown"),
    (["assigned", "preparing", "ready"], "assigned"),
])
def test_order_state_is_derived_from_its_jobs(jobs: list[str], state: str) -> None:
    assert orders.derive_state(jobs).value == state


def test_final_order_states_are_sticky() -> None:
    assert orders.advance(orders.OrderState.QUEUED, orders.OrderState.PRINTING) is orders.OrderState.PRINTING
    for final in orders.FINAL_STATES:
        assert orders.advance(final, final) is final
        with pytest.raises(InvalidTransition):
            orders.advance(final, orders.OrderState.QUEUED)
        assert not orders.cancellable(final)
    with pytest.raises(InvalidTransition):
        orders.derive_state(["warming_up"])


# -- ledger ----------------------------------------------------------------------------------

def test_the_notes_worked_example() -> None:
    costs = ledger.Costs(material_minor=255, machine_minor=700, fees_minor=145)
    who = ledger.Beneficiaries("fablab", {"alice": 1}, {"parent-design": {"bob": 1}})
    shares = ledger.distribute(4000, "EUR", costs, who)
    amounts: dict[tuple[str, str], int] = {}
    for s in shares:
        amounts[(s.recipient, s.share)] = amounts.get((s.recipient, s.share), 0) + s.minor_units
    assert amounts == {("fablab", "reimbursement"): 955, ("payment-fees", "fees"): 145, ("fablab", "maker"): 1740,
                       ("commons-fund", "commons"): 435, ("alice", "design"): 508, ("bob", "upstream"): 217}
    assert sum(s.minor_units for s in shares) == 4000
    assert all(s.explanation for s in shares)
    assert any("maker 60 %" in s.explanation for s in shares)


def test_ledger_adds_up_to_the_cent_over_many_prices() -> None:
    rng = random.Random(8)
    for _ in range(2000):
        price = rng.randrange(0, 10**7)
        costs = ledger.Costs(*(rng.randrange(0, 2000) for _ in range(4)))
        contributors = {f"c{i}": rng.randrange(1, 9) for i in range(rng.randrange(0, 7))}
        upstream = {f"p{i}": {f"u{i}{j}": rng.randrange(1, 5) for j in range(rng.randrange(0, 4))}
                    for i in range(rng.randrange(0, 4))}
        shares = ledger.distribute(price, "EUR", costs, ledger.Beneficiaries("node", contributors, upstream))
        assert sum(s.minor_units for s in shares) == price
        assert all(s.minor_units > 0 for s in shares)


def test_a_price_below_costs_pays_costs_in_order() -> None:
    shares = ledger.distribute(300, "EUR", ledger.Costs(200, 200, 50), ledger.Beneficiaries("node"))
    assert [(s.share, s.minor_units) for s in shares] == [("reimbursement", 200), ("reimbursement", 100)]
    assert "covers only" in shares[1].explanation


def test_nobody_to_credit_goes_to_the_commons() -> None:
    shares = ledger.distribute(1000, "EUR", ledger.Costs(), ledger.Beneficiaries("node"))
    assert {(s.recipient, s.minor_units) for s in shares} == {("node", 600), ("commons-fund", 400)}


def test_value_equation_is_validated_and_snapshotted() -> None:
    eq = ledger.ValueEquation(version="2", maker_percent=Decimal(50), design_percent=Decimal(30),
                              commons_percent=Decimal(20))
    assert ledger.parse_equation(eq.to_json()) == eq
    with pytest.raises(InvalidArgument, match="add up to 100"):
        ledger.ValueEquation(maker_percent=Decimal(70))
    with pytest.raises(InvalidArgument):
        ledger.parse_equation("{}")
    with pytest.raises(InvalidArgument):
        ledger.distribute(-1, "EUR", ledger.Costs(), ledger.Beneficiaries("n"))


# -- ratings ---------------------------------------------------------------------------------

def test_bayesian_reputation_is_not_swung_by_one_vote() -> None:
    one = ratings.reputation([ratings.Vote(5, {"quality": 5})])
    assert one.count == 1 and one.mean == 5.0 and 3.0 < one.score < 3.5
    many = ratings.reputation([ratings.Vote(5, {})] * 95 + [ratings.Vote(1, {})] * 5)
    assert many.score > 4.5 and many.count == 100
    assert one.criteria["quality"][1] == 1
    assert ratings.reputation([]).describe() == "no ratings yet"


@pytest.mark.parametrize(("stars", "criteria", "comment"), [
    (0, {}, ""), (6, {}, ""), (3, {"speed": 3}, ""), (3, {"quality": 9}, ""), (3, {}, "x" * 2001), (3, {}, "a\x00"),
])
def test_bad_ratings_are_refused(stars: int, criteria: dict[str, int], comment: str) -> None:
    with pytest.raises(InvalidArgument):
        ratings.check_rating(stars, criteria, comment)


# -- quotes ----------------------------------------------------------------------------------

def test_price_is_material_plus_machine_time_plus_fees() -> None:
    p = quotes.price(quotes.Estimate(seconds=3.5 * 3600, filament_g=85), 1, quotes.Rates("EUR", 200, 3))
    assert (p.material_minor, p.machine_minor, p.fees_minor, p.contribution_minor) == (255, 700, 29, 287)
    assert p.total_minor == 255 + 700 + 29 + 287
    assert quotes.price(quotes.Estimate(3600, 10), 3, quotes.Rates("EUR", 100, 1)).machine_minor == 300
    for bad in (0, -1, quotes.MAX_QUANTITY + 1):
        with pytest.raises(InvalidArgument, match="quantity"):
            quotes.price(quotes.Estimate(1, 1), bad, quotes.Rates("EUR", 1, 1))


def test_history_corrects_the_estimate_only_with_enough_prints() -> None:
    point = quotes.HistoryPoint(1000, 1100, 10, 9.5)
    assert quotes.correction([point] * 2).time_factor == 1.0
    fixed = quotes.correction([point] * 5)
    assert fixed.time_factor == pytest.approx(1.1) and fixed.filament_factor == pytest.approx(0.95)
    assert fixed.prints == 5 and "+10 %" in fixed.note and "5 measured prints" in fixed.note
    wild = quotes.correction([quotes.HistoryPoint(10, 1000, 1, 1)] * 5)
    assert wild.time_factor == 2.0


def test_rank_by_rule() -> None:
    def option(node: str, total: int, secs: int, km: float | None) -> quotes.QuoteOption:
        return quotes.QuoteOption(node, "p", "m", quotes.Price("EUR", total, 0, 0), secs, 1.0, km, 3.0, 0, "",
                                  quotes.correction([]))
    opts = [option("a", 500, 100, 30.0), option("b", 400, 300, None), option("c", 600, 50, 2.0)]
    assert [o.node for o in quotes.rank(opts, "cheapest")] == ["b", "a", "c"]
    assert [o.node for o in quotes.rank(opts, "fastest")] == ["c", "a", "b"]
    assert [o.node for o in quotes.rank(opts, "nearest")] == ["c", "a", "b"]
    with pytest.raises(InvalidArgument):
        quotes.rank(opts, "prettiest")


def test_objects_are_paid_by_their_parts_weights_and_add_up_to_the_price() -> None:
    """Two lids and a body weighing five lids: the body's object takes 5/7 of the price, the lids 1/7
    each, the cents a split leaves over go by largest remainder and all of them add up to the price."""
    parts = ["lid", "lid", "body"]
    assert ledger.payouts(700, parts, {"lid": 1_000, "body": 5_000}) == [100, 100, 500]
    for price in (1, 2, 99, 1001, 10**12):
        paid = ledger.payouts(price, parts, {"lid": 1_234, "body": 5_678})
        assert sum(paid) == price and 0 <= paid[0] - paid[1] <= 1 and paid[0] <= paid[2] + 1
    # no weights kept (a quote stored before), a part without one, or all weightless: equal shares
    for weights in ({}, {"lid": 5}, {"lid": 0, "body": 0}):
        assert ledger.payouts(100, parts, weights) == [34, 33, 33]
    assert ledger.payouts(0, parts, {"lid": 1, "body": 5}) == [0, 0, 0] and ledger.payouts(5, [], {}) == []


def test_a_parts_weight_is_its_material_and_machine_time_at_the_rates() -> None:
    rates = quotes.Rates("EUR", 300, 5)  # 3.00 an hour, 0.05 a gram
    body, lid = quotes.Estimate(3 * 3600, 40.0), quotes.Estimate(600, 4.0)
    assert quotes.part_weight(body, rates) == (900 + 200) * 1000
    assert quotes.part_weight(lid, rates) == (50 + 20) * 1000
    assert quotes.part_weight(quotes.Estimate(1.0, 0.001), rates) == 88  # under a cent, yet not nothing


def test_a_stored_quote_option_keeps_its_part_weights() -> None:
    from hub.service.order_values import option_from_json, option_json
    option = quotes.QuoteOption("n", "p", "m", quotes.Price("EUR", 1, 2, 3, 4), 10, 1.0, None, 3.0, 0, "",
                                quotes.correction([]), (("lid", 70_000), ("body", 1_100_000)))
    stored = json.loads(json.dumps(option_json(option)))
    assert option_from_json(stored) == option
    del stored["weights"]  # stored before the weights were kept
    assert option_from_json(stored) == replace(option, part_weights=())


# -- geo -------------------------------------------------------------------------------------

def test_distance_and_coordinates() -> None:
    berlin, paris = geo.parse_near("52.5200,13.4050"), geo.parse_near("48.8566,2.3522")
    assert geo.distance_km(berlin, paris) == pytest.approx(878, abs=5)
    assert geo.distance_km(berlin, berlin) == 0.0
    for bad in ("91,0", "0,181", "abc", "1,2,3", "nan,0", "1," * 40):
        with pytest.raises(InvalidArgument):
            geo.parse_near(bad)


@pytest.mark.parametrize("text", ["5_2,1_3", "\u0665\u0662,\u0661\u0663", "\uff15\uff12,\uff11\uff13", " 52,13", "52, 13",
                                  "52,13\n", "52.5\n,13", "+52,13", "1e1,2", "inf,0", "52.,13", ".5,13", "--5,1"])
def test_near_takes_plain_ascii_decimals_only(text: str) -> None:
    with pytest.raises(InvalidArgument, match="near") as info:
        geo.parse_near(text)
    assert info.value.field == "near"


def test_near_is_normalised() -> None:
    assert geo.parse_near("52.5200,13.4050").text == "52.52,13.405"
    assert geo.parse_near("-0,-0.0").text == "0.0,0.0"
    assert geo.parse_near("-33.9,151").text == "-33.9,151.0"
    assert geo.parse_near(geo.parse_near("48.8566,2.3522").text) == geo.parse_near("48.8566,2.3522")
    assert geo.parse_near("0.00001,-0.000050").text == "0.00001,-0.00005"  # never "1e-05,-5e-05"
    tiny = geo.parse_near("0.00000000000000000001,-179.99999999999999999999")
    assert geo.parse_near(tiny.text) == tiny


def test_value_equation_sums_are_exact() -> None:
    """The default context rounds to 28 digits: 50.00000000000000000000000000001 + 30 + 20 came out as 100."""
    with pytest.raises(InvalidArgument, match="add up to 100"):
        ledger.ValueEquation("1", Decimal("50.00000000000000000000000000001"), Decimal(30), Decimal(20))
    with pytest.raises(InvalidArgument, match="add up to 100"):
        ledger.ValueEquation("1", Decimal(60), Decimal(25), Decimal(15), Decimal("70.0000000000000000000000000001"),
                             Decimal("29.9999999999999999999999999998"))
    with pytest.raises(InvalidArgument, match="add up to 100"):
        ledger.ValueEquation("1", Decimal("1E-999999999"), Decimal(80), Decimal(20))
    assert ledger.ValueEquation("1", Decimal("50.1234"), Decimal("29.8766"), Decimal(20)).maker_percent == Decimal("50.1234")


def test_a_copy_is_estimated_part_by_part_and_must_fit_whole() -> None:
    """A copy's estimate sums each distinct mesh times its count; a printer quotes a copy only when
    every one of its meshes fits (the first mesh alone was checked)."""
    from pathlib import Path

    from hub.scheduler import PrinterRecord
    from hub.service.orders import _unfit
    from hub.service.quoting import MeshPlan, PartMesh

    lid, body = quotes.Estimate(600.0, 2.5), quotes.Estimate(3600.0, 20.0)
    assert quotes.per_copy([(lid, 2), (body, 1)]) == quotes.Estimate(4800.0, 25.0)
    kit = MeshPlan((PartMesh(Path("lid.stl"), (20.0, 20.0, 5.0), 2), PartMesh(Path("body.stl"), (230.0, 20.0, 20.0))),
                   False, False)
    small = PrinterRecord("lab-1", "mini", "Prusa MINI", (180.0, 180.0, 180.0), 0.4, ("PLA",), "idle", True, True, True)
    assert _unfit(kit, "PLA", small) == "a 230x20x20 mm part does not fit printer mini"
    assert _unfit(kit, "PLA", replace(small, build_volume_mm=(250.0, 210.0, 210.0))) is None
    assert _unfit(MeshPlan((PartMesh(Path("r.stl"), None),), True, True), "PLA", small) is None  # size unknown


def test_a_job_makes_the_published_meshes_only_with_every_parameter_at_its_default() -> None:
    from hub.service.quoting import as_published

    defaults = {"part": "box", "wall": 2, "clearance": 0.25, "lid": True}
    assert as_published(defaults, {}) and as_published({}, {})
    assert as_published(defaults, {"wall": "2", "clearance": "0.25", "part": "box", "lid": "true"})
    assert as_published(defaults, {"wall": "2.0", "part": '"box"'})  # as OpenSCAD reads them
    for changed in ({"wall": "3"}, {"part": "lid"}, {"lid": "1"}, {"size": "20"}, {"wall": "[" * 5000}):
        assert not as_published(defaults, changed), changed  # "1" is no bool; a name it lacks is a change


def test_a_part_printed_as_published_is_its_meshes_with_the_designs_defaults() -> None:
    text = (Path(__file__).resolve().parents[2] / "designs" / "box-with-lid" / "spime.toml").read_text(encoding="utf-8")
    lid = orders.printed_part(text, "lid")
    assert lid.meshes == {"lid.stl"} and lid.defaults["part"] == "box" and lid.defaults["clearance"] == 0.25
    assert orders.printed_part(text, "hinge") == orders.PrintedPart(frozenset(), lid.defaults)
    assert orders.printed_part("not toml [", "lid") == orders.PrintedPart()
