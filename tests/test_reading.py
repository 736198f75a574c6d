"""What alphaopt reads in the problem text without a model (``reading.read``), once per solve:
each reading answers only when the text is unambiguous."""

from __future__ import annotations

from alphaopt.agent import prompts
from alphaopt.agent.reading import Reading, TextNumber, read


def test_goal_sentence_is_the_question_to_optimize():
    text = ("A farm grows wheat and corn. Wheat earns $2.5 per acre. At most 40% of the land is corn. "
            "How many acres of each should it plant to maximize profit? Assume the land is 100 acres.")
    assert read(text).goal == "How many acres of each should it plant to maximize profit?"
    assert read("Buy x and y. Find the plan at the lowest cost.").goal == "Find the plan at the lowest cost."
    assert read("A table:\n| a | b |\nWhat is the best plan?").goal == "What is the best plan?"
    assert read("Nothing to optimize here.").goal == ""
    block = prompts.goal_block(read(text))
    assert '"How many acres of each should it plant to maximize profit?"' in block and "objective" in block
    assert prompts.goal_block(read("Nothing to optimize here.")) == ""


def test_goal_sense_reads_the_direction_only_when_the_text_is_unambiguous():
    assert read("Cook at most 5 meals. How many of each to maximize profit?").sense == "maximize"
    assert read("It must use at least 20 vans. The goal is to minimise the cost.").sense == "minimize"
    # without the verbs, the last question's words decide; "at most"/"at least" are bounds
    assert read("Buy at most 4 of A. What is the cheapest diet?").sense == "minimize"
    highest = read("A minimum of 3 runs. What is the highest number of boxes at least 2 trucks carry?")
    assert highest.sense == "maximize"
    assert read("Maximize profit while you minimize waste.").sense is None
    assert read("What is the maximum profit at the minimum price?").sense is None
    assert read("Plan the week. Each worker has at most 40 hours.").sense is None


def test_bounds_are_numbers_the_text_states_once_with_one_direction():
    text = ("At least 2,000 units of oil must be sent, and the firm has a budget of $1500. "
            "It can use at most 35% of its trucks, and needs 12 technicians; a truck holds 40 units "
            "and a container holds 40 units. Up to 7.5 tons fit.")
    assert read(text).bounds == {2000.0: ">=", 1500.0: "<=", 12.0: ">=", 7.5: "<="}
    # a number written twice, or stated both ways, is not a reading
    assert read("Make at least 10 chairs. Each chair takes 10 minutes.").bounds == {}
    assert read("At least 5 vans are needed, and at most 5 vans").bounds == {}
    assert read("A version 1.2.3 needs at most 4 units").bounds == {4.0: "<="}
    # a need per unit is a coefficient, not a bound
    assert read("A table needs 3 hours of carpentry; each chair requires 2 hours.").bounds == {}
    assert read("The project is requiring 500 hours of labor.").bounds == {500.0: ">="}


def test_shares_are_percentages_the_text_states_once_as_a_bound():
    text = ("It can use at most 35% of its trucks, at least 20 percent of the units are red, and he can at most "
            "perform 40% of his concerts as R&B. The tax is 8%.")
    assert read(text).shares == {0.35: "<=", 0.2: ">=", 0.4: "<="}  # 8% bounds nothing
    assert read("At most 30% are blue, and 30% of the rest green.").shares == {}  # written twice
    assert read("At least 10% and at most 10% of it.").shares == {}  # both ways


def test_a_bound_carries_over_the_list_that_follows_it():
    mix = "Use at least 20 kg of sand, 30 kg of gravel, and 45 kg of cement in the mix."
    assert read(mix).bounds == {20.0: ">=", 30.0: ">=", 45.0: ">="}
    assert read("It has available 100 units of paint, 50 units of glitter, and 70 units of glue.").bounds == {
        100.0: "<=", 50.0: "<=", 70.0: "<="}
    assert read("It can spend at most $5000 and 2000 hours of labor.").bounds == {5000.0: "<=", 2000.0: "<="}
    # the list ends with the sentence, at a number in other words, and at a percentage
    assert read("At least 20 chairs and 30 tables. Tables sell for 40 and 55.").bounds == {20.0: ">=", 30.0: ">="}
    assert read("At least 20 chairs and costs 30 each.").bounds == {20.0: ">="}
    assert read("At least 20 chairs and 30% tables.").bounds == {20.0: ">="}
    # after "requires" a list is a need per unit: "requires 17 hours of labor, 8 hours of inspection"
    assert read("The project requires 500 hours of labor, 8 hours of inspection.").bounds == {500.0: ">="}


def _unused(text: str, constants: set[float], **kwargs: int) -> list[tuple[str, str]]:
    return [(n.written, n.phrase) for n in read(text).unused(constants, **kwargs)]


def test_unused_numbers_are_the_texts_quantities_a_program_never_writes():
    text = ("An orchard holds 640 crates of pears. Pears earn $1,200.50 per crate and plums $300. At most 40% of "
            "the crates may be plums. Sector 8 buys the plums. It runs 2 trucks with a 4-wheeler.")
    # the crates (640) and the pears' price are missing; 40% is written as 0.4; 2, "Sector 8" and
    # the "4-" of a compound are not quantities of the model
    assert _unused(text, {300.0, 0.4}) == [("640", "An orchard holds 640 crates of pears."),
                                           ("1,200.50", "Pears earn $1,200.50 per crate and plums $300.")]
    assert _unused(text, {640.0, 1200.5, 300, 40}) == []  # the percentage as written also counts
    assert _unused(text, set(), limit=1) == [("640", "An orchard holds 640 crates of pears.")]
    assert _unused(text, {float("nan"), float("inf"), 640.0, 1200.5, 300, 40}) == []  # non-finite constants ignored


def test_table_cells_and_label_ranges_are_not_quantities_a_line_can_use():
    text = "Data are in Table 1-17 and pages 4 - 9.\n| food | cost |\n| rice | 450 |\nBuy at least 60 units."
    assert _unused(text, set()) == [("60", "Buy at least 60 units.")]


def test_a_number_said_twice_is_listed_once():
    assert _unused("Make at least 50 cars. Each car needs 50 bolts.", set()) == [("50", "Make at least 50 cars.")]


def test_counted_goal_is_a_number_of_things_to_minimize():
    vans = read("Vans carry 5. Minimize the total number of vans needed.")
    assert vans.counted_goal == "Minimize the total number of vans"
    assert read("How many should run to minimize the number of trips of either type?").counted_goal == (
        "minimize the number of trips of either type")
    assert read("Maximize the number of meals that can be delivered.").counted_goal is None  # an output
    assert read("Minimize the total cost.").counted_goal is None


def test_a_reading_is_frozen_data_with_the_word_count():
    reading = read("Make at least 50 cars. Minimize the cost.")
    assert isinstance(reading, Reading) and reading.words == 8 and reading.sense == "minimize"
    assert reading.numbers == (TextNumber(written="50", value=50.0, phrase="Make at least 50 cars."),)
    assert Reading.model_validate(reading.model_dump()) == reading  # a checkpoint stores it as plain data
