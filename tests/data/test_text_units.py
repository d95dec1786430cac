"""Scripts written without spaces between words (Chinese, Japanese, Thai): one rule for counting, cutting and
matching words (retrievals_rag.data.text_units), used by the cropping generator and the question filter."""

from __future__ import annotations

import re

import pytest

from retrievals_rag.data.passage_queries import CroppingGenerator, cut_span, split_heading
from retrievals_rag.data.question_filter import QuestionFilter, topic_terms
from retrievals_rag.data.text_units import character_pairs, segment_unspaced, word_spans, word_weight

CHINESE = (
    "胰岛素是由胰脏内的胰岛β细胞分泌的一种蛋白质激素。胰岛素参与调节糖代谢，控制血糖平衡，可用于治疗糖尿病。"
    "它的分子量为5808道尔顿。"
)
JAPANESE = "インスリンは膵臓のランゲルハンス島のβ細胞から分泌されるペプチドホルモンの一種である。血糖値を下げる働きがある。"
ENGLISH = (
    "Insulin is a peptide hormone produced by beta cells of the pancreatic islets.  It regulates the "
    "metabolism of carbohydrates, fats and protein by promoting the absorption of glucose from the blood."
)


def test_a_character_of_an_unspaced_script_is_a_word_and_other_text_is_split_as_before() -> None:
    assert len(word_spans("胰岛素降低血糖")) == 7
    assert word_weight("胰岛素降低血糖") == 3.5  # a Chinese word is about two characters
    assert word_weight("β细胞 secrete insulin!") == 4  # β, 细 and 胞 half each, secrete, insulin
    assert word_weight(ENGLISH) == len(re.findall(r"\w+", ENGLISH))
    assert [ENGLISH[start:end] for start, end in word_spans(ENGLISH)] == ENGLISH.split()
    text = "血糖値を下げる"
    assert [text[start:end] for start, end in word_spans(text)] == ["血", "糖", "値", "を", "下", "げ", "る"]
    assert character_pairs("血糖値") == ["血糖", "糖値"] and character_pairs("血") == []
    assert segment_unspaced("用胰岛素 treat 糖尿病").split() == [
        "用胰",
        "胰岛",
        "岛素",
        "treat",
        "糖尿",
        "尿病",
    ]
    assert segment_unspaced("猫 cat").split() == ["猫", "cat"]  # a lone character stays a word
    assert segment_unspaced(ENGLISH) == ENGLISH
    assert word_weight("한국어는 띄어쓰기를 한다") == 3  # Korean is written with spaces


@pytest.mark.parametrize("passage", [CHINESE, JAPANESE], ids=["chinese", "japanese"])
def test_cropping_cuts_a_span_of_a_sentence_not_the_whole_passage(passage: str) -> None:
    generator = CroppingGenerator(questions_per_passage=2, max_words=12, seed=3)

    [crops] = generator.generate([passage], ["p1"])

    assert len(crops) == 2 and len(set(crops)) == 2
    for crop in crops:
        assert crop in passage  # cut from it as written: no space put between characters
        assert 5 <= len(word_spans(crop)) <= 12
        assert crop.count("。") <= 1 and not crop.rstrip("。").count("。")  # within one sentence
        rest = cut_span(crop, passage)
        assert crop not in rest and len(rest) == len(passage) - len(crop)


def test_cropping_english_is_unchanged_by_the_rule() -> None:
    generator = CroppingGenerator(questions_per_passage=2, max_words=8, seed=3)

    [crops] = generator.generate([ENGLISH], ["p1"])

    for crop in crops:
        assert len(crop.split()) == 8 and crop in " ".join(ENGLISH.split())


def test_question_filter_weighs_characters_of_unspaced_scripts_as_half_words() -> None:
    rules = QuestionFilter(max_words=20)
    passage = CHINESE

    assert rules.reason("胰岛素如何调节血糖？", passage) is None
    long_question = "胰岛素是否能够在所有的情况下都完全控制糖尿病患者体内的血糖平衡并且没有任何副作用呢？"
    assert word_weight(long_question) > 20
    assert rules.reason(long_question, passage) == "too_long"  # one "word" to \w+, and never too long before
    assert rules.reason("光合作用需要什么？", passage) == "off_topic"
    assert {"胰岛", "岛素"} <= topic_terms("胰岛素如何调节血糖？")


def test_the_copy_check_reads_characters_of_unspaced_scripts() -> None:
    """Before, a Chinese question was one \\w+ "word", never a run of eight: a sentence of the passage with a
    question mark added passed as a question."""
    rules = QuestionFilter()

    copied = "胰岛素参与调节糖代谢，控制血糖平衡吗？"  # two clauses of the passage, verbatim
    assert rules.reason(copied, CHINESE) == "copied"
    assert rules.reason("インスリンは膵臓のランゲルハンス島のβ細胞から分泌されるのか？", JAPANESE) == "copied"
    # sharing a term or two is asking about the passage, not copying it
    assert rules.reason("胰岛素如何调节血糖？", CHINESE) is None
    assert rules.reason("糖尿病患者为什么需要胰岛素？", CHINESE) is None
    # sixteen characters weigh eight words: ten shared in a row are not yet a copy
    assert rules.reason("胰岛素是由胰脏内的胰岛β细胞分泌的吗？", CHINESE) == "copied"
    assert rules.reason("为什么胰岛素参与调节糖代谢控制血糖？", CHINESE) is None
    # English keeps its rule: eight words in a row
    english = "Does it affect the metabolism of carbohydrates, fats and protein by promoting absorption?"
    assert rules.reason(english, ENGLISH) == "copied"
    assert rules.reason("Does insulin change the metabolism of carbohydrates and fats?", ENGLISH) is None


def test_a_chinese_title_is_a_heading_and_a_hard_wrapped_chinese_line_is_not() -> None:
    assert split_heading("胰岛素\n" + CHINESE) == ("胰岛素", CHINESE)
    assert split_heading("胰岛素是由胰脏内的胰岛β细胞分泌的，\n一种蛋白质激素。" + CHINESE) is None


def test_a_chinese_question_is_as_long_as_an_english_one_of_half_its_characters() -> None:
    """Before, each character counted a whole word: a question of 49 to 96 characters (24 to 48 words) was
    dropped as too long by the default limit of 48 words, and a ten-word limit was ten characters."""
    question = "在二型糖尿病患者中，胰岛素抵抗是如何影响胰岛β细胞分泌胰岛素的能力，以及这种变化与血糖长期控制之间有什么关系？"
    assert len(question) > 48 and word_weight(question) <= 48
    assert QuestionFilter().reason(question, CHINESE) is None
    assert QuestionFilter(max_words=20).reason(question, CHINESE) == "too_long"


def test_a_long_chinese_first_line_is_not_a_heading_and_a_long_chinese_title_is() -> None:
    """Before, an unspaced line was one "word": any first line up to 300 characters read as a heading (a whole
    sentence of prose), and a limit in words did not apply to Chinese at all."""
    title = "二型糖尿病患者胰岛素抵抗与胰岛β细胞功能衰退的关系：一项为期十年的前瞻性队列研究"
    assert split_heading(title + "\n" + CHINESE) == (title, CHINESE)  # 40 characters: 20 words
    prose = "胰岛素是由胰脏内的胰岛β细胞分泌的一种蛋白质激素，它参与调节糖代谢并控制血糖平衡，在临床上被广泛用于治疗各种类型的糖尿病患者以及其他相关的代谢性疾病"
    assert 64 < len(prose) < 300
    body = CHINESE + CHINESE  # longer than the line above it
    assert split_heading(prose + "\n" + body) is None
    assert split_heading(prose + "\n" + body, max_words=40) == (prose, body)  # 36 words
