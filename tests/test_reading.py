"""Readings of the problem text that the program fixes rely on: each answers only when the
text is unambiguous."""

from __future__ import annotations

from alphaopt.agent import prompts
from alphaopt.agent import reading


def test_goal_sentence_is_the_question_to_optimize():
    text = ("A farm grows wheat and corn. Wheat earns $2.5 per acre. At most 40% of the land is corn. "
            "How many acres of each should it plant to maximize profit? Assume the land is 100 acres.")
    assert reading.goal_sentence(text) == "How many acres of each should it plant to maximize profit?"
    assert reading.goal_sentence("Buy x and y. Find the plan at the lowest cost.") == "Find the plan at the lowest cost."
    assert reading.goal_sentence("A table:\n| a | b |\nWhat is the best plan?") == "What is the best plan?"
    assert reading.goal_sentence("Nothing to optimize here.") == ""
    block = prompts.goal_block(text)
    assert '"How many acres of each should it plant to maximize profit?"' in block and "objective" in block
    assert prompts.goal_block("Nothing to optimize here.") == ""


def test_goal_sense_reads_the_direction_only_when_the_text_is_unambiguous():
    assert reading.goal_sense("Cook at most 5 meals. How many of each to maximize profit?") == "maximize"
    assert reading.goal_sense("It must use at least 20 vans. The goal is to minimise the cost.") == "minimize"
    # without the verbs, the last question's words decide; "at most"/"at least" are bounds
    assert reading.goal_sense("Buy at most 4 of A. What is the cheapest diet?") == "minimize"
    assert reading.goal_sense("A minimum of 3 runs. What is the highest number of boxes at least 2 trucks carry?") \
        == "maximize"
    assert reading.goal_sense("Maximize profit while you minimize waste.") is None
    assert reading.goal_sense("What is the maximum profit at the minimum price?") is None
    assert reading.goal_sense("Plan the week. Each worker has at most 40 hours.") is None


def test_bounds_are_numbers_the_text_states_once_with_one_direction():
    text = ("At least 2,000 units of oil must be sent, and the firm has a budget of $1500. "
            "It can use at most 35% of its trucks, and needs 12 technicians; a truck holds 40 units "
            "and a container holds 40 units. Up to 7.5 tons fit.")
    assert reading.bounds(text) == {2000.0: ">=", 1500.0: "<=", 12.0: ">=", 7.5: "<="}
    # a number written twice, or stated both ways, is not a reading
    assert reading.bounds("Make at least 10 chairs. Each chair takes 10 minutes.") == {}
    assert reading.bounds("At least 5 vans are needed, and at most 5 vans") == {}
    assert reading.bounds("A version 1.2.3 needs at most 4 units") == {4.0: "<="}
    # a need per unit is a coefficient, not a bound
    assert reading.bounds("A table needs 3 hours of carpentry; each chair requires 2 hours.") == {}
    assert reading.bounds("The project is requiring 500 hours of labor.") == {500.0: ">="}


def test_a_bound_carries_over_the_list_that_follows_it():
    diet = "Get at least 97 grams of protein, 163 grams of carbohydrates, and 2217 calories from these foods."
    assert reading.bounds(diet) == {97.0: ">=", 163.0: ">=", 2217.0: ">="}
    assert reading.bounds("It has available 100 units of paint, 50 units of glitter, and 70 units of glue.") == {
        100.0: "<=", 50.0: "<=", 70.0: "<="}
    assert reading.bounds("It can spend at most $5000 and 2000 hours of labor.") == {5000.0: "<=", 2000.0: "<="}
    # the list ends with the sentence, at a number in other words, and at a percentage
    assert reading.bounds("At least 20 chairs and 30 tables. Tables sell for 40 and 55.") == {20.0: ">=", 30.0: ">="}
    assert reading.bounds("At least 20 chairs and costs 30 each.") == {20.0: ">="}
    assert reading.bounds("At least 20 chairs and 30% tables.") == {20.0: ">="}
    # after "requires" a list is a need per unit: "requires 17 hours of labor, 8 hours of inspection"
    assert reading.bounds("The project requires 500 hours of labor, 8 hours of inspection.") == {500.0: ">="}


def test_unused_numbers_are_the_texts_quantities_a_program_never_writes():
    text = ("A farmer has 500 acres of land. Wheat earns $1,200.50 per acre and corn $300. At most 40% of "
            "the land may be corn. Sector 8 buys the corn. He grows 2 crops with a 4-wheeler.")
    # the land (500) and the wheat's price are missing; 40% is written as 0.4; 2, "Sector 8" and
    # the "4-" of a compound are not quantities of the model
    assert reading.unused_numbers(text, {300.0, 0.4}) == [
        ("500", "A farmer has 500 acres of land."), ("1,200.50", "Wheat earns $1,200.50 per acre and corn $300.")]
    assert reading.unused_numbers(text, {500.0, 1200.5, 300, 40}) == []  # the percentage as written also counts
    assert reading.unused_numbers(text, set(), max_phrases=1) == [("500", "A farmer has 500 acres of land.")]


def test_table_cells_and_label_ranges_are_not_quantities_a_line_can_use():
    text = "Data are in Table 1-17 and pages 4 - 9.\n| food | cost |\n| rice | 450 |\nBuy at least 60 units."
    assert reading.unused_numbers(text, set()) == [("60", "Buy at least 60 units.")]


def test_a_number_said_twice_is_listed_once():
    assert reading.unused_numbers("Make at least 50 cars. Each car needs 50 bolts.", set()) == [("50", "Make at least 50 cars.")]


def test_counted_goal_is_a_number_of_things_to_minimize():
    assert reading.counted_goal("Vans carry 5. Minimize the total number of vans needed.") == "Minimize the total number of vans"
    assert reading.counted_goal("How many should run to minimize the number of trips of either type?") == (
        "minimize the number of trips of either type")
    assert reading.counted_goal("Maximize the number of meals that can be delivered.") is None  # an output
    assert reading.counted_goal("Minimize the total cost.") is None
