"""The builtin demo dataset: synthetic users with distinct, learnable personas, made in code.

Each persona combines a name, a pet (kind and name), a city, a job, a hobby, a favourite food,
a signature greeting, a sign-off, two catchphrases and a writing style (punctuation and an
optional opening word). Persona ``i`` takes element ``i`` of each attribute list after a seeded
shuffle, so personas are pairwise distinct and ``demo_dataset(n + 1)`` extends
``demo_dataset(n)`` by one user.

A user's history (20-60 items, dated, increasing) mixes posts (plain text) and friends'
questions answered by the user (pairs) on five topics: pet, city, job, hobby, food. Every
answer reads ``<greeting> <sentence about a persona fact> <catchphrase> <sign-off>`` in the
persona's style, 9-23 words. The 10 queries are further friends' questions on the same topics
(two per topic, worded differently from every history question) whose reference answers are
made the same way. Greeting, sign-off, catchphrases and facts all recur in the history, so
retrieval or fine-tuning on it can predict most reference words, and a model without it cannot.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass

from runners.data.types import Dataset, HistoryItem, Query, User
from runners.errors import DataError

NAMES = (
    "Maya", "Theo", "Priya", "Jonas", "Amara", "Felix", "Ingrid", "Mateo", "Yuki", "Omar", "Clara",
    "Dmitri", "Leila", "Rafael", "Sofia", "Kwame", "Hana", "Lucas", "Nadia", "Oscar", "Elif",
    "Bruno", "Zara", "Henrik", "Ines", "Tariq", "Freya", "Diego", "Mei", "Arjun", "Lena", "Samir",
)
GREETINGS = (
    "Howdy folks", "Ahoy there", "Hey hey hey", "Greetings, earthlings", "Yo yo", "Hiya sunshine",
    "Well hello there", "Salutations, friend", "Oh hi", "Heya pal", "Hello hello", "Bonjour mon ami",
    "Hola amigo", "What's cooking, friend", "Howzit", "Aloha", "Sup buddy", "Hi there, starshine",
    "Morning, champ", "Cheerio", "Namaste", "Ciao bella", "G'day mate", "Guten Tag", "Hej hej",
    "Konnichiwa", "Shalom", "Jambo", "Salve", "Kia ora", "Howdy partner", "Ola",
)
SIGNOFFS = (
    "Stay curious", "Peace out", "Over and out", "Keep it real", "Later, alligator",
    "Hugs and high fives", "Toodles", "Stay awesome", "Onwards and upwards", "Ciao for now",
    "Take it easy", "Much love", "Keep smiling", "Until next time", "Stay cozy", "Rock on",
    "Cheers and beers", "Live long and prosper", "Keep on trucking", "Godspeed", "Stay golden",
    "Mischief managed", "That's all, folks", "Adios", "Bye for now", "Keep shining",
    "Stay hydrated", "Smell you later", "Ta-ta", "Hasta luego", "Peace and pancakes", "Fare thee well",
)
CATCHPHRASES = (
    "easy peasy lemon squeezy", "no two ways about it", "living the dream", "full steam ahead",
    "as my grandma always says", "cool beans", "bob's your uncle", "piece of cake",
    "the more the merrier", "right as rain", "happy as a clam", "all roads lead to snacks",
    "better late than never", "go big or go home", "that's how we roll", "what a time to be alive",
    "the plot thickens", "you can't make this up", "same old, same old", "it is what it is",
    "knock on wood", "fingers crossed", "not my first rodeo", "let the good times roll",
    "holy guacamole", "easy does it", "shiver me timbers", "by the beard of Zeus",
    "jeepers creepers", "okey dokey artichokey", "just keep swimming", "home sweet home",
    "that's my jam", "hakuna matata", "keep your chin up", "you only live once",
    "it's a small world", "when in Rome", "mind over matter", "rise and grind",
    "the sky's the limit", "mark my words", "no pain, no gain", "cross that bridge later",
    "the cherry on top", "so it goes", "tally ho", "great Scott", "spill the beans",
    "time flies like a banana", "plot twist", "nailed it", "zero regrets", "sweet as pie",
    "cool as a cucumber", "busy as a bee", "life is a highway", "carpe diem", "c'est la vie",
    "good grief", "by hook or by crook", "don't count your chickens", "ride or die",
    "bless my socks",
)
PET_NAMES = (
    "Biscuit", "Pepper", "Noodle", "Waffles", "Mochi", "Ziggy", "Pickles", "Olive", "Rocket",
    "Tofu", "Captain", "Bean", "Marbles", "Nacho", "Peaches", "Gizmo", "Truffle", "Pumpkin",
    "Sprout", "Bagel", "Cosmo", "Domino", "Fudge", "Juniper", "Kiwi", "Luna", "Muffin", "Nugget",
    "Oreo", "Pretzel", "Quincy", "Radish",
)
PET_KINDS = ("dog", "cat", "parrot", "rabbit", "tortoise", "ferret", "hedgehog", "guinea pig")
CITIES = (
    "Lisbon", "Oslo", "Nairobi", "Montreal", "Kyoto", "Valparaiso", "Edinburgh", "Marrakesh",
    "Hanoi", "Reykjavik", "Melbourne", "Krakow", "Cusco", "Seville", "Tbilisi", "Halifax", "Porto",
    "Bergen", "Cape Town", "Vancouver", "Tallinn", "Ljubljana", "Oaxaca", "Dubrovnik", "Galway",
    "Hobart", "Zanzibar", "Salzburg", "Quebec City", "Bruges", "Boulder", "Savannah",
)
JOBS = (
    "nurse", "carpenter", "librarian", "marine biologist", "bus driver", "pastry chef",
    "firefighter", "architect", "beekeeper", "radio host", "dentist", "park ranger",
    "tattoo artist", "pilot", "florist", "watchmaker", "zookeeper", "translator", "blacksmith",
    "astronomer", "barista", "lighthouse keeper", "game designer", "veterinarian", "tailor",
    "sommelier", "geologist", "puppeteer", "glassblower", "cartographer", "violin maker", "locksmith",
)
HOBBIES = (
    "rock climbing", "knitting", "birdwatching", "playing chess", "baking sourdough",
    "salsa dancing", "kayaking", "pottery", "stargazing", "skateboarding", "gardening",
    "fly fishing", "playing the ukulele", "origami", "trail running", "photography", "juggling",
    "calligraphy", "scuba diving", "woodcarving", "crossword puzzles", "archery", "surfing",
    "watercolor painting", "geocaching", "yoga", "fencing", "ice skating", "sailing", "karaoke",
    "mushroom foraging", "playing bagpipes",
)
FOODS = (
    "ramen", "tacos al pastor", "pierogi", "pad thai", "shakshuka", "sushi", "paella", "pho",
    "goulash", "falafel", "dim sum", "lasagna", "bibimbap", "jollof rice", "poutine", "empanadas",
    "butter chicken", "moussaka", "ceviche", "fish and chips", "kimchi stew", "mac and cheese",
    "pavlova", "churros", "risotto", "banh mi", "gnocchi", "tiramisu", "borscht", "laksa", "arepas",
    "dumplings",
)
STYLES = (
    ("enthusiastic", "!", "Wow,"),
    ("terse", ".", ""),
    ("laid-back", "...", "Honestly,"),
    ("formal", ".", "Indeed,"),
    ("dramatic", "!!", "Oh my,"),
)
"""(label, sentence-end punctuation, opening word) of each writing style."""

MAX_USERS = min(len(NAMES), len(GREETINGS), len(SIGNOFFS), len(CATCHPHRASES) // 2, len(PET_NAMES),
                len(CITIES), len(JOBS), len(HOBBIES), len(FOODS))
TOPICS = ("pet", "city", "job", "hobby", "food")
N_QUERIES = 10

QUESTIONS = {
    "pet": ("how is your pet doing {when}?", "any funny pet stories {when}?",
            "what has your furry friend been up to {when}?", "does your little buddy keep you busy {when}?",
            "who is waiting for you at home {when}?", "how is the pet life treating you {when}?"),
    "city": ("what do you love about where you live?", "any plans around town {when}?",
             "where should I go if I visit you {when}?", "is your city treating you well {when}?",
             "what is the best spot in your town?", "how is life in your corner of the world {when}?"),
    "job": ("how is work going {when}?", "busy at work {when}?", "do you still enjoy your job?",
            "what happened at work {when}?", "how was your shift {when}?", "is the job treating you well {when}?"),
    "hobby": ("what are you doing for fun {when}?", "any plans for the weekend?", "how do you unwind after work?",
              "still into your favourite hobby {when}?", "what keeps you sane {when}?",
              "got any free time {when}?"),
    "food": ("what should we eat {when}?", "any food recommendations {when}?", "what is for dinner {when}?",
             "what are you craving {when}?", "where should we grab a bite {when}?", "hungry {when}?"),
}
ANSWERS = {
    "pet": ("{pet_name} the {pet} is doing great and still rules the house",
            "{pet_name} my {pet} napped on my laptop all afternoon",
            "{pet_name} the {pet} keeps me busy and I love it",
            "my {pet} {pet_name} learned a brand new trick",
            "{pet_name} the {pet} says hi and wants more treats"),
    "city": ("{city} is the best city on earth, especially at sunset",
             "wander the old streets of {city} and you will see",
             "nothing beats a slow evening walk through {city}",
             "{city} always feels like home to me",
             "come to {city} and I will show you around"),
    "job": ("being a {job} in {city} keeps me on my toes",
            "another long day as a {job}, but I love it",
            "work as a {job} is busy but so rewarding",
            "the life of a {job} is never boring",
            "every {job} needs a day off, and today is mine"),
    "hobby": ("{hobby} all weekend long, obviously",
              "nothing relaxes me like {hobby} with {pet_name}",
              "I will be {hobby} near {city} as usual",
              "{hobby} is my happy place",
              "a little {hobby} fixes everything"),
    "food": ("{food} every single time, no contest",
             "I could eat {food} for breakfast, lunch and dinner",
             "I found the best {food} spot in {city}",
             "{food}, obviously, you know me",
             "let us make {food} together at my place"),
}
POSTS = {
    "pet": ("took {pet_name} the {pet} to the vet and got a clean bill of health",
            "{pet_name} the {pet} woke me up at dawn again"),
    "city": ("the sunset over {city} tonight was unreal", "spent the afternoon exploring a new corner of {city}"),
    "job": ("long shift as a {job} today but worth every minute", "best day as a {job} in ages"),
    "hobby": ("spent the whole evening {hobby}", "finally got back into {hobby} after a busy month"),
    "food": ("made {food} from scratch tonight", "had the best {food} of my life in {city} today"),
}
WHEN = ("today", "this week", "lately", "these days", "this weekend", "tonight", "recently", "right now")
LEAD_INS = ("", "Hey {name}, ", "Quick question, ", "So {name}, ", "Tell me, ")


@dataclass(frozen=True)
class Persona:
    """The facts and style of one demo user."""

    name: str
    pet: str
    pet_name: str
    city: str
    job: str
    hobby: str
    food: str
    greeting: str
    signoff: str
    catchphrases: tuple[str, ...]
    style: tuple[str, str, str]

    def facts(self) -> dict[str, str]:
        """The template slots filled by this persona."""
        return {"name": self.name, "pet": self.pet, "pet_name": self.pet_name, "city": self.city,
                "job": self.job, "hobby": self.hobby, "food": self.food}

    def profile(self) -> str:
        """A one-sentence profile."""
        return (f"{self.name} is a {self.job} in {self.city} who loves {self.hobby}, never says no to "
                f"{self.food}, and has a {self.pet} named {self.pet_name}.")


def _shuffled(values: tuple, rng: random.Random) -> list:
    values = list(values)
    rng.shuffle(values)
    return values


def personas(n_users: int, seed: int = 0) -> list[Persona]:
    """Build ``n_users`` distinct personas.

    Args:
        n_users: How many, 1 .. :data:`MAX_USERS`.
        seed: Seeds the shuffles; persona ``i`` does not depend on ``n_users``.

    Returns:
        The personas.

    Raises:
        DataError: If ``n_users`` is out of range.
    """
    if not 1 <= n_users <= MAX_USERS:
        raise DataError(f"demo dataset: n_users={n_users} is outside 1..{MAX_USERS}; pass a value in that range")
    rng = random.Random(f"demo-personas:{seed}")
    lists = [_shuffled(v, rng) for v in (NAMES, PET_NAMES, CITIES, JOBS, HOBBIES, FOODS, GREETINGS, SIGNOFFS)]
    phrases = _shuffled(CATCHPHRASES, rng)
    people = []
    for i in range(n_users):
        name, pet_name, city, job, hobby, food, greeting, signoff = (values[i] for values in lists)
        people.append(Persona(
            name=name, pet=PET_KINDS[rng.randrange(len(PET_KINDS))], pet_name=pet_name, city=city, job=job,
            hobby=hobby, food=food, greeting=greeting, signoff=signoff,
            catchphrases=(phrases[2 * i], phrases[2 * i + 1]), style=STYLES[rng.randrange(len(STYLES))],
        ))
    return people


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _say(persona: Persona, template: str, rng: random.Random) -> str:
    """``<greeting> <sentence> <catchphrase> <sign-off>`` in the persona's style."""
    _, end, opener = persona.style
    sentence = template.format(**persona.facts())
    sentence = f"{opener} {sentence}" if opener else _cap(sentence)
    catchphrase = _cap(rng.choice(persona.catchphrases))
    return f"{persona.greeting}{end} {sentence}{end} {catchphrase}{end} {persona.signoff}{end}"


def _ask(persona: Persona, topic: str, rng: random.Random) -> str:
    lead = rng.choice(LEAD_INS).format(name=persona.name)
    question = rng.choice(QUESTIONS[topic]).format(when=rng.choice(WHEN))
    return lead + question if lead else _cap(question)


def _history(persona: Persona, user_id: str, rng: random.Random) -> tuple[HistoryItem, ...]:
    n_items = rng.randint(20, 60)
    n_pairs = round(0.6 * n_items)
    topics = list(TOPICS) * 2 + [rng.choice(TOPICS) for _ in range(n_items - 2 * len(TOPICS))]
    items: list[tuple[str, str | None, str]] = []
    for k, topic in enumerate(topics):
        if k < n_pairs:
            items.append(("pair", _ask(persona, topic, rng), _say(persona, rng.choice(ANSWERS[topic]), rng)))
        else:
            items.append(("text", None, _say(persona, rng.choice(POSTS[topic]), rng)))
    rng.shuffle(items)
    day = datetime.date(2023, 1, 1)
    history = []
    for k, (kind, question, text) in enumerate(items):
        day += datetime.timedelta(days=rng.randint(1, 4))
        common = {"time": day.isoformat(), "id": f"{user_id}-h{k}"}
        if kind == "pair":
            history.append(HistoryItem(input=question, output=text, **common))
        else:
            history.append(HistoryItem(text=text, **common))
    return tuple(history)


def _queries(persona: Persona, user_id: str, asked: set[str], rng: random.Random) -> tuple[Query, ...]:
    topics = _shuffled(TOPICS * (N_QUERIES // len(TOPICS)), rng)
    queries = []
    for k, topic in enumerate(topics):
        question = _ask(persona, topic, rng)
        while question in asked:
            question = _ask(persona, topic, rng)
        asked.add(question)
        answer = _say(persona, rng.choice(ANSWERS[topic]), rng)
        queries.append(Query(id=f"{user_id}-q{k}", input=question, output=answer))
    return tuple(queries)


def demo_user(persona: Persona, index: int, seed: int = 0) -> User:
    """The demo user built from ``persona``, the ``index``-th of the dataset.

    Args:
        persona: The persona.
        index: Its position; part of the user id and of the random seed.
        seed: The dataset seed.

    Returns:
        The user, with profile, history and queries.
    """
    user_id = f"demo-{index:02d}-{persona.name.lower()}"
    rng = random.Random(f"demo-user:{seed}:{index}")
    history = _history(persona, user_id, rng)
    queries = _queries(persona, user_id, {h.input for h in history if h.input}, rng)
    return User(user_id=user_id, history=history, queries=queries, profile=persona.profile())


def demo_dataset(n_users: int = 24, seed: int = 0) -> Dataset:
    """The builtin demo dataset, generated deterministically (no download).

    Args:
        n_users: Number of users, 1 .. :data:`MAX_USERS` (32).
        seed: Seeds personas and texts; the same arguments always give the same dataset.

    Returns:
        A dataset with ``task="demo"`` and ``source="demo"``.

    Raises:
        DataError: If ``n_users`` is out of range.
    """
    people = personas(n_users, seed)
    return Dataset(task="demo", users=tuple(demo_user(p, i, seed) for i, p in enumerate(people)), source="demo")
