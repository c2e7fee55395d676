"""The shared TTS text front end (data_prep.text_normalize): pt-BR and Catalan tables, codes, rule files."""

import pytest

from data_prep.text_normalize import UnsupportedLanguageError, normalize_text, resolve_language, supported

PT_BR = [
    # numbers: Brazilian forms (num2words "pt" would give "dezasseis", "dezanove")
    ("Tenho 16 anos.", "Tenho dezesseis anos."),
    ("Em 1999.", "Em mil novecentos e noventa e nove."),
    ("1.999 pessoas", "mil novecentas e noventa e nove pessoas"),  # feminine agreement
    ("1.999 livros", "mil novecentos e noventa e nove livros"),
    ("Custa 3,14 metros", "Custa três vírgula catorze metros"),
    ("0,05", "zero vírgula zero cinco"),
    ("MP3", "MP três"),
    ("007", "zero zero sete"),
    ("1 hora e 2 vezes", "uma hora e duas vezes"),
    ("22 pessoas e 200 páginas", "vinte e duas pessoas e duzentas páginas"),
    ("2 livros", "dois livros"),
    # currency
    ("R$ 19,50", "dezenove reais e cinquenta centavos"),
    ("R$ 1,00", "um real"),
    ("R$1.234,56", "mil duzentos e trinta e quatro reais e cinquenta e seis centavos"),
    ("R$ 0,01", "um centavo"),
    ("R$ 2 milhões", "dois milhões de reais"),
    ("R$ 1.000.000,00", "um milhão de reais"),
    ("US$ 5", "cinco dólares"),
    # dates
    ("no dia 15/03/2024", "no dia quinze de março de dois mil e vinte e quatro"),
    ("01/01/2000", "primeiro de janeiro de dois mil"),
    # ordinals
    ("É o 1º lugar", "É o primeiro lugar"),
    ("a 2ª vez", "a segunda vez"),
    ("a 22ª edição", "a vigésima segunda edição"),
    # percentages
    ("15% de desconto", "quinze por cento de desconto"),
    ("2,5%", "dois vírgula cinco por cento"),
    # abbreviations
    ("O Sr. Silva e a Sra. Souza", "O senhor Silva e a senhora Souza"),
    ("Dr. João chegou.", "Doutor João chegou."),
    ("A Dra. Ana", "A doutora Ana"),
    ("frutas, legumes etc.", "frutas, legumes etcétera."),
    ("nº 5", "número cinco"),
    ("Ônibus às 3 horas", "Ônibus às três horas"),
]

CA = [
    ("Tinc 16 anys.", "Tinc setze anys."),
    ("3,5", "tres coma cinc"),
    ("1.234", "mil dos-cents trenta-quatre"),
    ("1 hora i 2 vegades", "una hora i dues vegades"),
    ("21 cases", "vint-i-una cases"),
    ("19,50 €", "dinou euros amb cinquanta cèntims"),
    ("€ 1", "un euro"),
    ("1,01 €", "un euro amb un cèntim"),
    ("2.000.000 €", "dos milions d'euros"),
    ("el 1r i la 2a", "el primer i la segona"),
    ("el 5è pis i la 5a porta", "el cinquè pis i la cinquena porta"),
    ("15/03/2024", "quinze de març de dos mil vint-i-quatre"),
    ("01/04/1999", "primer d'abril de mil nou-cents noranta-nou"),
    ("20%", "vint per cent"),
    ("El Sr. Puig i la Sra. Vila", "El senyor Puig i la senyora Vila"),
    ("Dra. Pons", "Doctora Pons"),
    ("pomes, peres, etc.", "pomes, peres, etcètera."),
    ("c/ Major 5", "carrer Major cinc"),
]


@pytest.mark.parametrize("text,expected", PT_BR)
def test_pt_br_table(text, expected):
    assert normalize_text(text, "pt-br") == expected


@pytest.mark.parametrize("text,expected", CA)
def test_catalan_table(text, expected):
    assert normalize_text(text, "ca") == expected


def test_language_codes_are_read_loosely():
    text = "R$ 16,00 em 15/03/2024"
    expected = normalize_text(text, "pt-br")
    assert "dezesseis reais" in expected
    for code in ("pt_BR", "PT-BR", "pt", "pt-br-sp"):
        assert normalize_text(text, code) == expected
    for code in ("ca", "ca-valencia", "ca_balear", "CA-central"):
        assert normalize_text("16 €", code) == "setze euros"
    assert resolve_language("pt_BR") == "pt-br" and resolve_language("ca_balear") == "ca"


def test_unknown_language_is_a_clear_error():
    assert not supported("xx") and supported("ca")
    with pytest.raises(UnsupportedLanguageError, match="tts_text_normalization.yaml"):
        normalize_text("16", "xx")
    with pytest.raises(UnsupportedLanguageError):  # explicit: Brazilian rules must not be used for Portugal
        normalize_text("16", "pt-pt")


def test_case_is_left_to_the_caller():
    assert normalize_text("Ônibus ÀS 3 horas, Sr. Silva", "pt-br") == "Ônibus ÀS três horas, senhor Silva"


def test_rules_come_from_the_file(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "languages:\n"
        "  es:\n"
        "    number_language: es\n"
        "    abbreviations: {'Sr.': señor}\n"
        "    currencies:\n"
        "      - {symbols: ['€'], singular: euro, plural: euros, plural_after_large: de euros,\n"
        "         cent_singular: céntimo, cent_plural: céntimos, joiner: con}\n",
        encoding="utf-8")
    assert normalize_text("el Sr. Gómez paga 2,05 €", "es", rules_path=rules) == \
        "el señor Gómez paga dos euros con cinco céntimos"
