# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""A small synthetic DSP-format dataset for the quickstart, generated in code (the real DSP data is not shipped).

Each query gets one answer per domain written in that domain's register (academic, business, entertainment,
literary) plus a plain "normal" answer, built from short sentence pools, so that the domains prefer different
answers to the same question, as in the DSP data.
"""

from __future__ import annotations

import random


TOPICS = [
    "climate change",
    "sleep",
    "coffee",
    "electric cars",
    "remote work",
    "the moon",
    "bees",
    "volcanoes",
    "public libraries",
    "chess",
    "rainforests",
    "bread baking",
    "solar power",
    "jazz",
    "marathons",
    "octopuses",
    "city parks",
    "recycling",
    "the ocean",
    "video games",
    "tea",
    "bicycles",
    "memory",
    "deserts",
    "trains",
    "mushrooms",
    "robots",
    "birds",
    "rivers",
    "music lessons",
    "gardening",
    "the internet",
    "glaciers",
    "cats",
    "museums",
    "photography",
    "vaccines",
    "earthquakes",
    "poetry",
    "chocolate",
    "the stock market",
    "dreams",
    "wind turbines",
    "honey",
    "lighthouses",
    "snow",
    "football",
    "mountains",
    "languages",
    "clocks",
]
QUESTIONS = ["Tell me about {t}.", "What should I know about {t}?", "Explain {t} briefly.", "Why does {t} matter?"]
STYLES = {
    "academy": [
        "Peer-reviewed studies of {t} report measurable, replicable effects.",
        "A systematic review of {t} identifies three mechanisms worth distinguishing.",
        "The evidence on {t} remains contested, and the methodology deserves scrutiny.",
        "Researchers model {t} with controlled experiments and longitudinal data.",
        "Theoretical accounts of {t} differ in their assumptions and predictions.",
    ],
    "business": [
        "For a company, {t} is a market opportunity with a clear return on investment.",
        "Customers increasingly expect a strategy on {t}, which affects revenue and brand value.",
        "The cost-benefit analysis of {t} favours early movers in a competitive market.",
        "Stakeholders should track key performance indicators tied to {t}.",
        "Investing in {t} can cut operating costs and open new revenue streams.",
    ],
    "entertainment": [
        "Honestly, {t} is wild and way more fun than it sounds!",
        "Picture a blockbuster movie about {t}, full of plot twists and laughs.",
        "Fun fact: {t} has inspired games, memes and at least one viral song!",
        "If {t} were a TV show, everyone would binge the whole season.",
        "Grab some popcorn, because the story of {t} is a total thrill ride!",
    ],
    "literature": [
        "Like a quiet river at dusk, {t} carries old stories in its current.",
        "Poets have long turned to {t} as a metaphor for longing and time.",
        "In the pages of great novels, {t} whispers of memory and loss.",
        "{T} unfolds like a sonnet, each line heavier with meaning.",
        "There is an elegy hidden in {t}, soft as the last light of autumn.",
    ],
    "normal": [
        "{T} is a common topic with several practical aspects.",
        "In short, {t} has benefits and drawbacks.",
        "Many people are interested in {t} for everyday reasons.",
        "There is a lot of basic information available about {t}.",
        "{T} can be understood with a few simple facts.",
    ],
}


def make_demo_dsp_queries(num_queries: int = 60, sentences: int = 3, seed: int = 0) -> list[dict]:
    """DSP-format items `{query, responses: {academy, business, entertainment, literature, normal}}`."""
    rng = random.Random(seed)
    items = []
    for i in range(num_queries):
        topic = TOPICS[i % len(TOPICS)]
        query = rng.choice(QUESTIONS).format(t=topic)
        responses = {}
        for domain, pool in STYLES.items():
            picked = rng.sample(pool, sentences)
            responses[domain] = " ".join(s.format(t=topic, T=topic[0].upper() + topic[1:]) for s in picked)
        items.append({"query": query, "responses": responses})
    return items
