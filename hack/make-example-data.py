#!/usr/bin/env python3
"""Regenerate the small real data sets in examples/data/ from the packages that ship them.

The trainer's examples and tests need real, labelled data that works offline. These packages
carry such data but are not runtime dependencies, so install them into the virtual environment
first:

    .venv/bin/pip install chatterbot-corpus==1.3.3 statsmodels==0.15.0
    .venv/bin/python hack/make-example-data.py

The output is deterministic: the same package versions give byte-identical files.
"""

from __future__ import annotations

import csv
import importlib.metadata
import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "examples" / "data"

# Topics with enough distinct statements to train and validate on. The label is the corpus
# file name, which is also the topic's first category in the file.
CHATTERBOT_TOPICS = ("ai", "coding", "emotion", "psychology", "trivia")
STATEMENTS_PER_TOPIC = 120


def write_chatterbot_topics() -> None:
    """Write English chatterbot statements labelled by topic, balanced, with duplicates removed."""
    import chatterbot_corpus

    corpus_dir = pathlib.Path(chatterbot_corpus.__file__).parent / "data" / "english"
    by_topic: dict[str, list[str]] = {}
    for topic in CHATTERBOT_TOPICS:
        document = yaml.safe_load((corpus_dir / f"{topic}.yml").read_text(encoding="utf-8"))
        statements = []
        for conversation in document["conversations"]:
            for statement in conversation:
                text = " ".join(str(statement).split())
                if text and text not in statements:
                    statements.append(text)
        by_topic[topic] = statements

    # A statement that appears under two topics has no single right label.
    seen_in: dict[str, set[str]] = {}
    for topic, statements in by_topic.items():
        for text in statements:
            seen_in.setdefault(text, set()).add(topic)

    rows = []
    for topic, statements in by_topic.items():
        unique = [text for text in statements if len(seen_in[text]) == 1]
        rows.extend((text, topic) for text in unique[:STATEMENTS_PER_TOPIC])

    path = OUT / "chatterbot" / "topics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    print(f"{path.relative_to(ROOT)}: {len(rows)} rows, chatterbot-corpus {importlib.metadata.version('chatterbot-corpus')}")


def write_co2_monthly() -> None:
    """Write the Mauna Loa CO2 series as monthly means (weekly samples averaged, gaps dropped)."""
    from statsmodels.datasets import co2

    weekly = co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().dropna().round(3)
    path = OUT / "statsmodels" / "co2_monthly.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["month", "co2"])
        for month, value in monthly.items():
            writer.writerow([month.strftime("%Y-%m"), f"{value:.3f}"])
    print(f"{path.relative_to(ROOT)}: {len(monthly)} rows, statsmodels {importlib.metadata.version('statsmodels')}")


def write_anes96_vote() -> None:
    """Write the 1996 American National Election Study subset with the vote as the class label."""
    from statsmodels.datasets import anes96

    data = anes96.load_pandas().data
    columns = ["popul", "TVnews", "selfLR", "ClinLR", "DoleLR", "PID", "age", "educ", "income"]
    path = OUT / "statsmodels" / "anes96_vote.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow([*columns, "vote"])
        for _, row in data.iterrows():
            vote = "Dole" if int(row["vote"]) == 1 else "Clinton"
            writer.writerow([*(f"{row[column]:g}" for column in columns), vote])
    print(f"{path.relative_to(ROOT)}: {len(data)} rows, statsmodels {importlib.metadata.version('statsmodels')}")


if __name__ == "__main__":
    write_chatterbot_topics()
    write_co2_monthly()
    write_anes96_vote()
