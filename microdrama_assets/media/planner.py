"""The embedded, weight-free planner: any logline becomes a valid six-beat microdrama manifest.

No model runs here. Small lexicons read the logline (who the protagonist is, which props and places it names,
which genre its words lean to, whether it is Spanish), and seeded choices fill in the rest: names, looks, voices,
camera, framing, mood arc, action lines and short dialogue. Every random choice comes from a ``random.Random``
seeded by a SHA-256 of (seed, logline, aspect), so the same inputs always give the same manifest JSON, and
changing the shot count does not rename the cast.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

from .manifest import (
    FPS,
    MAX_CHARACTERS,
    Appearance,
    Beat,
    Build,
    CameraMove,
    Character,
    DialogueLine,
    EpisodeManifest,
    Framing,
    HairStyle,
    Location,
    Mood,
    Shot,
    TimeOfDay,
    Voice,
    check_id,
)

BEATS = ["hook", "setup", "turn", "escalation", "reveal", "cliffhanger"]
MAX_SHOTS = 40
MIN_SHOT_FRAMES = 1 * FPS  # the manifest's per-shot limits: 1-20 s
MAX_SHOT_FRAMES = 20 * FPS
MAX_LOGLINE_CHARS = 500
MAX_ACTION_CHARS = 400

# Speech-time estimate used to size shots for their dialogue (see estimate_dialogue_s).
LEAD_IN_S = 0.35
LINE_GAP_S = 0.25
TAIL_S = 0.3
SPEECH_MARGIN = 1.25

_MIDDLE_BEATS = ["setup", "turn", "escalation", "reveal"]
_MIDDLE_PRIORITY = ["reveal", "turn", "setup", "escalation"]  # which middle beats survive a short arc
_BEAT_WEIGHT = {"hook": 0.85, "setup": 1.0, "turn": 1.0, "escalation": 0.95, "reveal": 1.15, "cliffhanger": 1.05}


# --- deterministic randomness ------------------------------------------------------------------------------------
def _rng(seed: int, logline: str, aspect: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x1f{aspect}\x1f{logline}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def shot_seed(episode_seed: int, index: int) -> int:
    """A per-shot seed in [0, 2**31), stable for (episode seed, shot index)."""
    digest = hashlib.sha256(f"shot\x1f{episode_seed}\x1f{index}".encode("ascii")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


# --- text helpers ------------------------------------------------------------------------------------------------
# Bidi overrides/isolates are invisible and can reorder displayed text (Trojan Source); zero-width joiners stay,
# because some scripts need them.
_BIDI_CONTROLS = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"}
_WORD_RE = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*")
_CJK_CHAR_RE = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_QUOTE_RE = re.compile(r"[\"“”«»]([^\"“”«»]{2,200})[\"“”«»]")


def clean_logline(logline: str) -> str:
    """Strip control characters and collapse whitespace; cut to the manifest's 500 characters at a word."""
    if not isinstance(logline, str):
        raise TypeError(f"logline must be a string, got {type(logline).__name__}")
    text = "".join(
        " " if unicodedata.category(c) == "Cc" else c for c in logline if c not in _BIDI_CONTROLS
    )
    text = " ".join(text.split())
    if not text:
        raise ValueError("logline is empty")
    if len(text) > MAX_LOGLINE_CHARS:
        text = text[: MAX_LOGLINE_CHARS - 1].rsplit(" ", 1)[0].rstrip(" ,;:—-") + "…"
    return text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:—-") + "…"


def _spoken_words(text: str) -> int:
    # CJK writes no spaces: count each character as a word, which roughly matches speaking time.
    return len(_WORD_RE.findall(_CJK_CHAR_RE.sub(" ", text))) + len(_CJK_CHAR_RE.findall(text))


def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")


def _title_case(text: str) -> str:
    small = {"a", "an", "the", "of", "in", "on", "at", "to", "for", "and", "or", "but"}
    words = text.split(" ")
    return " ".join(
        w if (i and w.lower() in small) else "-".join(p[:1].upper() + p[1:] for p in w.split("-"))
        for i, w in enumerate(words)
    )


def _sentence_start(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class _Token:
    text: str
    lower: str
    start: int
    end: int


def _tokens(text: str) -> list[_Token]:
    # Typographic apostrophes match the lexicons' ASCII ones; same length, so offsets still index ``text``.
    return [
        _Token(m.group(), m.group().lower(), m.start(), m.end()) for m in _WORD_RE.finditer(text.replace("’", "'"))
    ]


# --- language ----------------------------------------------------------------------------------------------------
# Words that are common in one language and rare in the other ("a", "no" are both: left out).
_ES_STOPWORDS = frozenset(
    "el la los las un una unos unas de del que y en por para con su sus al lo es está ha han sido pero como más "
    "todavía se le les muy sin sobre cuando donde nunca ya este esta ese esa hay mi tu aún".split()
)
_EN_STOPWORDS = frozenset(
    "the an of and to in is are was were that it for on with her his their but from by at who which this be has "
    "have had not own she he they when after before into every its what".split()
)


def detect_language(text: str) -> str:
    """'es' when Spanish stopwords clearly outnumber English ones, else 'en'."""
    words = [t.lower for t in _tokens(text)]
    spanish = sum(w in _ES_STOPWORDS for w in words) + (1 if re.search(r"[ñ¿¡]", text.lower()) else 0)
    english = sum(w in _EN_STOPWORDS for w in words)
    return "es" if spanish >= 2 and spanish > english else "en"


# --- lexicons ----------------------------------------------------------------------------------------------------
# Person nouns -> grammatical gender when the word implies one ("" when it does not).
_PERSON_EN: dict[str, str] = {
    **dict.fromkeys(
        "barista nurse doctor surgeon patient intern owner ghostwriter writer author novelist poet editor journalist "
        "reporter detective cop officer guard lawyer judge teacher student professor scientist engineer programmer "
        "hacker driver courier chef cook baker bartender janitor cleaner housekeeper babysitter concierge "
        "receptionist bellhop valet chauffeur clerk cashier vendor florist mechanic locksmith librarian paramedic "
        "firefighter pilot soldier artist painter musician singer dancer actor influencer streamer photographer "
        "kid child teenager teen twin boss ceo manager assistant secretary employee worker coworker colleague heir "
        "billionaire millionaire thief spy assassin killer witness suspect stranger neighbor neighbour roommate "
        "tenant friend ex rival ghost passenger tourist traveler customer client guest caller sender recipient "
        "family therapist dentist vet lifeguard translator carrier mailman postman".split(),
        "",
    ),
    **dict.fromkeys("woman girl lady mother mom daughter sister wife widow bride fiancee grandmother aunt".split(),
                    "f"),
    **dict.fromkeys("waitress actress heiress maid nanny nun queen princess landlady stepmother".split(), "f"),
    **dict.fromkeys("man guy boy father dad son brother husband widower groom fiance grandfather uncle".split(), "m"),
    **dict.fromkeys("waiter priest king prince landlord stepfather doorman".split(), "m"),
}
_PERSON_ES: dict[str, str] = {
    **dict.fromkeys(
        "cartero enfermero médico doctor camarero mesero cocinero becario dueño escritor abogado profesor maestro "
        "conductor repartidor mensajero hombre chico niño padre hijo hermano esposo viudo novio jefe heredero "
        "desconocido extraño vecino amigo ladrón inquilino abuelo cajero secretario fotógrafo actor bailarín pintor "
        "científico ingeniero programador detective policía rey príncipe".split(),
        "m",
    ),
    **dict.fromkeys(
        "cartera enfermera médica doctora camarera mesera cocinera becaria dueña escritora abogada profesora "
        "maestra conductora repartidora mensajera mujer chica niña madre hija hermana esposa viuda novia jefa "
        "heredera desconocida extraña vecina amiga ladrona inquilina abuela cajera secretaria fotógrafa actriz "
        "bailarina pintora científica ingeniera programadora reina princesa".split(),
        "f",
    ),
    **dict.fromkeys(
        "barista paciente periodista taxista estudiante rival fantasma cliente huésped recepcionista conserje "
        "guardia espía testigo asistente cantante familia".split(),
        "",
    ),
}
_IRREGULAR_PLURALS = {
    "men": "man", "women": "woman", "children": "child", "wives": "wife", "families": "family", "thieves": "thief",
    "ladies": "lady", "spies": "spy", "nannies": "nanny", "babysitters": "babysitter", "bosses": "boss",
    "heiresses": "heiress", "waitresses": "waitress", "actresses": "actress", "witnesses": "witness",
    "princesses": "princess", "exes": "ex",
}
# Nouns that usually modify a following head ("rival food-truck owners", "twin sisters").
_MODIFIER_NOUNS = frozenset({"rival", "twin", "ghost", "family"})
_NUMBER_WORDS = {"two": 2, "three": 3, "both": 2, "dos": 2, "tres": 3, "ambos": 2, "ambas": 2}
_SINGULAR_DETERMINERS = frozenset({"a", "an", "one", "un", "una"})
_PLURAL_DETERMINERS = frozenset({"some", "unos", "unas", "los", "las", "two", "three", "both", "dos", "tres"})
_ANY_DETERMINERS = frozenset({"the", "my", "her", "his", "our", "their", "el", "la", "mi", "su"})
_STOP_WORDS = frozenset(
    "a an the one some my her his our their its this that these those and or but who whom whose which what when "
    "while where at in on of to for from with by into onto about after before over under near inside outside "
    "is are was were be been has have had gets get got keeps keep must can could will would should may might "
    "does do did un una unos unas el la los las de del en con por para que y o pero quien cuando donde al".split()
)
_VERB_HINTS = frozenset(
    "is are was were has have had gets get keeps keep must can will discovers discover finds find realizes "
    "realises learns receives inherits wakes decides agrees falls meets returns starts begins sees hears notices "
    "uncovers becomes loses steals hides follows wins takes makes gives accepts answers opens delivers swaps "
    "switches fakes pretends tries works lives goes comes wants needs refuses buys sells writes reads sends calls "
    "texts runs plays teaches saves lies says knows thinks believes remembers forgets misses kisses marries dates "
    "breaks catches chases hunts investigates reports drives walks enters leaves arrives swears hears suspects "
    "risks inherit discover realize fall meet try "
    "es está era fue tiene recibe descubre encuentra entrega decide despierta hereda pierde ve oye sabe debe "
    "puede intenta llega vuelve guarda esconde abre escribe lee envía llama busca sigue roba cree conoce "
    "acepta finge".split()
)

# Concrete props a scene can show, with the article each language needs. Order of appearance in the logline wins.
_PROPS_EN = frozenset(
    "locket necklace ring bracelet earring letter letters note notes envelope key keys keycard phone text message "
    "messages voicemail package packages parcel parcels box photo photograph picture diary journal obituary draft "
    "manuscript contract map camera video tape recording clock mirror painting book notebook laptop file folder "
    "badge ticket wallet bag suitcase umbrella gun knife bottle cup menu chart room locker blueprint usb card "
    "postcard invitation receipt coin scarf glove recipe cake".split()
)
_PROPS_ES: dict[str, str] = {
    "carta": "la carta", "cartas": "las cartas", "llave": "la llave", "llaves": "las llaves",
    "teléfono": "el teléfono", "móvil": "el móvil", "paquete": "el paquete", "paquetes": "los paquetes",
    "caja": "la caja", "foto": "la foto",
    "fotografía": "la fotografía", "diario": "el diario", "anillo": "el anillo", "collar": "el collar",
    "medallón": "el medallón", "mensaje": "el mensaje", "libro": "el libro", "reloj": "el reloj",
    "espejo": "el espejo", "maleta": "la maleta", "nota": "la nota", "cuaderno": "el cuaderno", "mapa": "el mapa",
    "cámara": "la cámara", "habitación": "la habitación", "manuscrito": "el manuscrito",
    "contrato": "el contrato", "testamento": "el testamento", "billete": "el billete", "cuadro": "el cuadro",
}
# Places that count as a prop only with a number after them ("room 9"): good for a title, but nothing a
# character can hand over, so dialogue and actions use a portable prop instead.
_NUMBERED_PROPS = frozenset({"room", "locker", "habitación"})

# Locations by keyword, most specific first; an entry with two locations is a seeded choice.
_LOCATION_KEYWORDS: list[tuple[tuple[Location, ...], frozenset[str]]] = [
    ((Location.elevator,), frozenset("elevator elevators lift ascensor".split())),
    ((Location.hospital,), frozenset(
        "hospital nurse nurses patient patients doctor surgeon ward clinic paramedic icu enfermera enfermero "
        "paciente médico médica clínica".split())),
    ((Location.hotel,), frozenset("hotel hotels lobby concierge bellhop suite motel huésped recepcionista".split())),
    ((Location.cafe,), frozenset(
        "cafe café coffee barista baristas espresso latte diner bakery cafetería cafeteria camarera "
        "camarero".split())),
    ((Location.station,), frozenset("station train subway metro platform commuter estación tren andén".split())),
    ((Location.rooftop,), frozenset("rooftop roof azotea tejado".split())),
    ((Location.park,), frozenset("park bench garden parque jardín".split())),
    ((Location.office,), frozenset("office boss ceo startup desk meeting coworker intern becario oficina jefe jefa "
                                   "empresa".split())),
    ((Location.office, Location.apartment), frozenset(
        "ghostwriter writer author novelist freelancer draft manuscript escritor escritora".split())),
    ((Location.apartment,), frozenset(
        "apartment flat home house phone text texts message door neighbor neighbour roommate kitchen bedroom "
        "apartamento piso casa puerta teléfono móvil mensaje vecino vecina".split())),
    ((Location.street,), frozenset(
        "street streets food-truck truck trucks drone drones delivery courier festival market alley sidewalk taxi "
        "cartero calle mensajero repartidor mercado".split())),
]
_DEFAULT_LOCATIONS = [Location.apartment, Location.cafe, Location.street, Location.office, Location.rooftop,
                      Location.park]
_TIME_KEYWORDS: list[tuple[TimeOfDay, frozenset[str]]] = [
    (TimeOfDay.night, frozenset(
        "night nights night-shift midnight nighttime overnight noche medianoche nocturno nocturna".split())),
    (TimeOfDay.dusk, frozenset("evening dusk sunset twilight atardecer anochecer".split())),
    (TimeOfDay.day, frozenset("day morning noon afternoon sunrise dawn mañana día mediodía".split())),
]

_PLACE_NAMES = {
    "en": {
        Location.cafe: "the cafe", Location.street: "the street", Location.hospital: "the hospital",
        Location.elevator: "the elevator", Location.office: "the office", Location.apartment: "the apartment",
        Location.hotel: "the hotel", Location.rooftop: "the rooftop", Location.park: "the park",
        Location.station: "the station",
    },
    "es": {
        Location.cafe: "la cafetería", Location.street: "la calle", Location.hospital: "el hospital",
        Location.elevator: "el ascensor", Location.office: "la oficina", Location.apartment: "el apartamento",
        Location.hotel: "el hotel", Location.rooftop: "la azotea", Location.park: "el parque",
        Location.station: "la estación",
    },
}
# A prop the place naturally has, for loglines that name none.
_PLACE_PROPS = {
    "en": {
        Location.cafe: "the order ticket", Location.street: "the package", Location.hospital: "the chart",
        Location.elevator: "the emergency phone", Location.office: "the file", Location.apartment: "the phone",
        Location.hotel: "the keycard", Location.rooftop: "the note", Location.park: "the note",
        Location.station: "the ticket",
    },
    "es": {
        Location.cafe: "el ticket", Location.street: "el paquete", Location.hospital: "el historial",
        Location.elevator: "el teléfono de emergencia", Location.office: "el expediente",
        Location.apartment: "el móvil", Location.hotel: "la tarjeta de la habitación", Location.rooftop: "la nota",
        Location.park: "la nota", Location.station: "el billete",
    },
}
# Who the protagonist is when the logline's subject is not a person ("A delivery drone keeps ...").
_PLACE_PROTAGONISTS = {
    "en": {
        Location.cafe: "regular", Location.street: "neighbor", Location.hospital: "nurse",
        Location.elevator: "office worker", Location.office: "assistant", Location.apartment: "tenant",
        Location.hotel: "guest", Location.rooftop: "tenant", Location.park: "jogger", Location.station: "commuter",
    },
    "es": {
        Location.cafe: "clienta habitual", Location.street: "vecina", Location.hospital: "enfermera",
        Location.elevator: "oficinista", Location.office: "asistente", Location.apartment: "inquilina",
        Location.hotel: "huésped", Location.rooftop: "inquilina", Location.park: "corredora",
        Location.station: "viajera",
    },
}

# --- genre -------------------------------------------------------------------------------------------------------
_GENRE_CUES: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "supernatural": (
        frozenset("ghost ghosts haunted dead died death obituary curse cursed future psychic spirit fantasma muerto "
                  "muerta murió futuro maldición".split()),
        ("years ago", "checked out", "not yet", "todavía no", "hace años", "has not been", "no ha sido"),
    ),
    "mystery": (
        frozenset("mysterious mystery secret secrets strange signals unknown hidden missing vanished clue locket "
                  "anonymous misterio misteriosa misterioso secreto extraño extraña desconocido anónimo "
                  "desaparecido".split()),
        (),
    ),
    "romance": (
        frozenset("love date dating kiss crush wedding bride groom ex fiancé fiance heart romance marry amor boda "
                  "beso cita novia novio".split()),
        (),
    ),
    "comedy": (
        frozenset("rival rivals stuck mistaken pretend pretends fake prank swap accidentally festival chaos "
                  "food-truck competition".split()),
        (),
    ),
    "drama": (
        frozenset("heir heiress inherit inherits fortune billionaire family lie lies divorce scandal heredero "
                  "heredera herencia familia mentira".split()),
        (),
    ),
}
_THREAT_CUES = (
    frozenset("danger dangerous threat warning warns kill killer murder chase chased stalker gun knife hunt "
              "don't peligro amenaza asesino".split()),
    ("no abras", "do not open"),
)
_GENRE_PRIORITY = ["supernatural", "mystery", "romance", "comedy", "drama"]

_MOOD_ARCS: dict[str, dict[str, list[Mood]]] = {
    "supernatural": {
        "hook": [Mood.eerie, Mood.mysterious], "setup": [Mood.somber, Mood.warm], "turn": [Mood.mysterious],
        "escalation": [Mood.tense], "reveal": [Mood.eerie], "cliffhanger": [Mood.tense, Mood.eerie],
    },
    "mystery": {
        "hook": [Mood.mysterious], "setup": [Mood.warm, Mood.hopeful], "turn": [Mood.mysterious],
        "escalation": [Mood.tense], "reveal": [Mood.tense, Mood.eerie], "cliffhanger": [Mood.tense],
    },
    "romance": {
        "hook": [Mood.romantic, Mood.warm], "setup": [Mood.warm, Mood.playful], "turn": [Mood.romantic],
        "escalation": [Mood.tense], "reveal": [Mood.romantic, Mood.somber], "cliffhanger": [Mood.tense],
    },
    "comedy": {
        "hook": [Mood.playful], "setup": [Mood.playful, Mood.warm], "turn": [Mood.tense, Mood.playful],
        "escalation": [Mood.tense], "reveal": [Mood.warm, Mood.romantic], "cliffhanger": [Mood.tense, Mood.playful],
    },
    "drama": {
        "hook": [Mood.hopeful, Mood.warm], "setup": [Mood.warm, Mood.hopeful], "turn": [Mood.playful, Mood.tense],
        "escalation": [Mood.tense], "reveal": [Mood.somber, Mood.tense], "cliffhanger": [Mood.tense],
    },
}
_CAMERAS: dict[str, list[CameraMove]] = {
    "hook": [CameraMove.push_in],
    "setup": [CameraMove.pan_left, CameraMove.pan_right, CameraMove.static, CameraMove.pull_out],
    "turn": [CameraMove.static, CameraMove.handheld, CameraMove.pan_right, CameraMove.tilt_down],
    "escalation": [CameraMove.handheld, CameraMove.push_in, CameraMove.pan_left],
    "reveal": [CameraMove.push_in, CameraMove.tilt_up, CameraMove.tilt_down],
    "cliffhanger": [CameraMove.push_in, CameraMove.handheld],
}
_FRAMINGS: dict[str, list[Framing]] = {
    "hook": [Framing.wide],
    "setup": [Framing.wide, Framing.medium, Framing.over_shoulder],
    "turn": [Framing.over_shoulder, Framing.two_shot, Framing.medium],
    "escalation": [Framing.two_shot, Framing.over_shoulder, Framing.close_up, Framing.medium],
    "reveal": [Framing.close_up],
    "cliffhanger": [Framing.close_up],
}
_PAIR_FRAMINGS = frozenset({Framing.two_shot, Framing.over_shoulder})

# --- cast --------------------------------------------------------------------------------------------------------
_NAMES = {
    ("en", "f"): "Maya Nora Iris Lena Zoe Clara Ruby Ava Hazel Jade Tessa Mila Elena Priya Naomi June Vera Leah "
                 "Alice Sofia Grace Ivy Cleo Dana".split(),
    ("en", "m"): "Leo Eli Sam Owen Jonah Marcus Theo Felix Adam Ravi Caleb Noah Simon Victor Hugo Ethan Julian "
                 "Miles Omar Daniel Kai Luca Isaac Gabe".split(),
    ("es", "f"): "Lucía Carmen Valeria Elena Sofía Marta Paula Inés Julia Alba Irene Clara Noelia Rocío Ana "
                 "Beatriz".split(),
    ("es", "m"): "Mateo Javier Diego Pablo Andrés Tomás Hugo Álvaro Marcos Rubén Sergio Iván Nicolás Gabriel "
                 "Adrián Raúl".split(),
}
_SKINS = ["#8d5524", "#c68642", "#e0ac69", "#f1c27d", "#ffdbac", "#5c3836", "#a16e4b", "#d4a373"]
_HAIRS = ["#1b1b1b", "#3b2314", "#6a4e42", "#b55239", "#d6b370", "#8c8c8c", "#2e1a47", "#7a3b2e"]
_OUTFITS = ["#c0392b", "#2c7be5", "#27ae60", "#f39c12", "#8e44ad", "#16a085", "#34495e", "#d35400", "#e84393",
            "#f1c40f"]
_HAIR_STYLES = {
    "f": [HairStyle.long, HairStyle.bun, HairStyle.curly, HairStyle.short],
    "m": [HairStyle.short, HairStyle.bald, HairStyle.curly, HairStyle.long],
}
_HEIGHTS = {"f": [0.9, 0.93, 0.96, 0.99], "m": [0.98, 1.01, 1.04, 1.07]}
_PITCHES = {"f": [56, 62, 68, 74, 80], "m": [26, 32, 38, 44, 50]}
_VARIANTS = {"f": ["f1", "f2", "f3", "f4", "f5"], "m": ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]}
_RATES = [150, 160, 170, 180]

_EXTRA_BY_CUE = [  # (cue words, english noun, spanish noun, spanish gender)
    (frozenset("text texts message messages phone voicemail call mensaje teléfono móvil".split()), "sender",
     "remitente", ""),
    (frozenset("letter letters envelope carta cartas package packages paquete".split()), "recipient",
     "destinatario", "m"),
    (frozenset("hired client contratada contratado cliente".split()), "client", "cliente", ""),
    (frozenset("locket necklace ring medallón collar anillo".split()), "stranger", "desconocido", "m"),
]
_EXTRA_BY_GENRE = {
    "supernatural": ("stranger", "desconocido", "m"), "mystery": ("stranger", "desconocido", "m"),
    "romance": ("charming stranger", "desconocido", "m"), "comedy": ("rival", "rival", ""),
    "drama": ("boss", "jefe", "m"),
}
_ROLE_BY_GENRE = {
    "supernatural": "mystery", "mystery": "mystery", "romance": "love interest", "comedy": "rival",
    "drama": "antagonist",
}
_TRAITS = {
    "en": {
        "protagonist": ["Quick-witted and stubborn; notices what others miss.",
                        "Tired, underpaid, and braver than they look.",
                        "Keeps a calm face while their mind races."],
        "rival": ["Competitive to a fault, secretly soft-hearted.", "Sharp tongue, sharper instincts."],
        "mystery": ["Speaks softly and knows far too much.", "Appears when least expected and never explains."],
        "antagonist": ["Polite smile, cold eyes.", "Used to getting exactly what they want."],
        "ally": ["Loyal, nosy, and impossible to fool.", "Always there with bad jokes and good advice."],
        "love interest": ["Charming, guarded, and hard to read.", "Warm laugh, secrets behind it."],
    },
    "es": {
        "protagonist": ["Ingenio rápido y terquedad a prueba de todo; ve lo que otros no ven.",
                        "Con sueño atrasado y más valor del que aparenta.",
                        "Mantiene la calma mientras su mente corre."],
        "rival": ["Competitividad sin límites y un corazón blando en secreto.",
                  "Lengua afilada, instinto más afilado."],
        "mystery": ["Habla bajo y sabe demasiado.", "Aparece cuando nadie lo espera y nunca explica nada."],
        "antagonist": ["Sonrisa educada, mirada fría.", "Siempre consigue lo que quiere."],
        "ally": ["Lealtad, curiosidad y un olfato imposible de engañar.",
                 "Siempre con malos chistes y buenos consejos."],
        "love interest": ["Encanto, reservas y una mirada difícil de leer.", "Risa cálida con secretos detrás."],
    },
}
_ROLE_NAMES_ES = {"protagonist": "protagonista", "rival": "rival", "mystery": "misterio", "antagonist": "antagonista",
                  "ally": "aliado", "love interest": "interés amoroso"}

# --- scene text --------------------------------------------------------------------------------------------------
# Lines put {obj} only in object position, so singular and plural props ("the keys") both read correctly.
_DIALOGUE: dict[str, dict[str, dict[str, dict[str, list]]]] = {
    "en": {
        "mystery": {
            "hook": {"solo": ["Where did {obj} come from?", "That wasn't here a minute ago."],
                     "duo": [[("p", "Did you see who left {obj}?"), ("o", "I didn't see anyone.")]]},
            "setup": {"solo": ["Nothing ever happens in {place}.", "Keep your head down. Don't ask questions."],
                      "duo": [[("o", "You look like you've seen a ghost."), ("p", "It's nothing. Just {obj}.")],
                              [("p", "Did you see who left {obj}?"), ("o", "I didn't see anyone.")]]},
            "turn": {"solo": ["Someone knows I have {obj}.", "Wait. This changes everything."],
                     "duo": [[("o", "You weren't supposed to find {obj}."), ("p", "Who are you?")],
                             [("p", "You know something about {obj}."), ("o", "More than you'd like.")]]},
            "escalation": {"solo": ["I have to get out of here.", "Why does everyone want {obj}?"],
                           "duo": [[("o", "Give me {obj}. Now."), ("p", "Not until you tell me the truth.")],
                                   [("p", "Stay away from me."), ("o", "You're already in too deep.")]]},
            "reveal": {"solo": ["No. That can't be right.", "So that's the secret of {obj}."],
                       "duo": [[("p", "That's impossible."), ("o", "It was always meant for you.")],
                               [("o", "Look closer at {obj}."), ("p", "That's my name.")]]},
            "cliffhanger": {"solo": ["Then who sent {obj}?", "Someone's at the door."],
                            "duo": [[("o", "Don't turn around.")], [("p", "{other}? What are you doing here?")]]},
        },
        "light": {
            "hook": {"solo": ["Of all the days for this.", "Okay. Nobody panic."],
                     "duo": [[("p", "Of all the people..."), ("o", "Believe me, I'm not thrilled either.")]]},
            "setup": {"solo": ["Today is going to be perfect.", "Nothing can ruin this."],
                      "duo": [[("o", "Stay on your side."), ("p", "Gladly.")],
                              [("p", "Nice try with {obj}."), ("o", "Jealous?")]]},
            "turn": {"solo": ["This is fine. Totally fine.", "Who touched {obj}?"],
                     "duo": [[("p", "This is your fault."), ("o", "My fault? Really?")],
                             [("o", "You kept {obj}?"), ("p", "Don't read into it.")]]},
            "escalation": {"solo": ["I am not losing to them.", "Who took {obj}?!"],
                           "duo": [[("o", "Give me {obj}."), ("p", "Over my dead body.")],
                                   [("p", "You're impossible."), ("o", "And you're blushing.")]]},
            "reveal": {"solo": ["Wait... they did that for me?", "Oh no. I like them."],
                       "duo": [[("p", "You did that for me?"), ("o", "Don't make it weird.")]]},
            "cliffhanger": {"solo": ["Did the lights just go out?", "That can't be who I think it is."],
                            "duo": [[("o", "Did you hear that?")], [("p", "{other}... don't move.")]]},
        },
        "drama": {
            "hook": {"solo": ["They think I'm someone else.", "Just smile. Nobody will know."],
                     "duo": [[("o", "Welcome home."), ("p", "...Thank you?")]]},
            "setup": {"solo": ["One more day. I can do this.", "Nobody looks twice at me here."],
                      "duo": [[("o", "Everything is ready, as always."), ("p", "Of course it is.")],
                              [("o", "You forgot {obj} again."), ("p", "I won't next time.")]]},
            "turn": {"solo": ["I could just tell them the truth.", "Why is my name on {obj}?"],
                     "duo": [[("o", "You don't remember me?"), ("p", "Should I?")],
                             [("p", "Why do you have {obj}?"), ("o", "Because it was yours first.")]]},
            "escalation": {"solo": ["I can't keep this up.", "If they find {obj}, it's over."],
                           "duo": [[("o", "You're not who you say you are."), ("p", "I never said anything.")],
                                   [("p", "You can't prove it."), ("o", "Watch me.")]]},
            "reveal": {"solo": ["So it was never about me.", "Everything I built was a lie."],
                       "duo": [[("p", "I can explain."), ("o", "Then start talking.")],
                               [("o", "I know about {obj}."), ("p", "Since when?")]]},
            "cliffhanger": {"solo": ["Then who is at the door?", "They know."],
                            "duo": [[("o", "I know exactly who you are.")], [("p", "{other}, wait!")]]},
        },
    },
    "es": {
        "mystery": {
            "hook": {"solo": ["¿Quién dejó {obj} aquí?", "Esto no estaba aquí hace un minuto."],
                     "duo": [[("p", "¿Viste quién dejó {obj}?"), ("o", "No vi a nadie.")]]},
            "setup": {"solo": ["En {place} nunca pasa nada.", "Cabeza baja. Sin preguntas."],
                      "duo": [[("o", "Parece que has visto un fantasma."), ("p", "No es nada. Solo {obj}.")],
                              [("p", "¿Viste quién dejó {obj}?"), ("o", "No vi a nadie.")]]},
            "turn": {"solo": ["Alguien sabe que tengo {obj}.", "Espera. Esto lo cambia todo."],
                     "duo": [[("o", "No debías encontrar {obj}."), ("p", "¿Quién eres?")],
                             [("p", "Sabes algo de {obj}."), ("o", "Más de lo que quisieras.")]]},
            "escalation": {"solo": ["Tengo que salir de aquí.", "¿Por qué todos quieren {obj}?"],
                           "duo": [[("o", "Dame {obj}. Ahora."), ("p", "No hasta que me digas la verdad.")],
                                   [("p", "Aléjate de mí."), ("o", "Ya no hay vuelta atrás.")]]},
            "reveal": {"solo": ["No. Eso no puede ser.", "Ya entiendo lo de {obj}."],
                       "duo": [[("p", "Es imposible."), ("o", "Siempre fue para ti.")],
                               [("o", "Mira bien {obj}."), ("p", "Ese es mi nombre.")]]},
            "cliffhanger": {"solo": ["¿Entonces quién envió {obj}?", "Hay alguien en la puerta."],
                            "duo": [[("o", "No te des la vuelta.")], [("p", "¿{other}? ¿Qué haces aquí?")]]},
        },
        "light": {
            "hook": {"solo": ["Justo hoy tenía que pasar.", "Vale. Que nadie entre en pánico."],
                     "duo": [[("p", "De toda la gente..."), ("o", "Créeme, yo tampoco estoy feliz.")]]},
            "setup": {"solo": ["Hoy va a ser perfecto.", "Nada puede arruinar esto."],
                      "duo": [[("o", "Quédate en tu lado."), ("p", "Con mucho gusto.")],
                              [("p", "Buen intento con {obj}."), ("o", "¿Celos?")]]},
            "turn": {"solo": ["Todo bien. Todo perfectamente bien.", "¿Quién tocó {obj}?"],
                     "duo": [[("p", "Esto es culpa tuya."), ("o", "¿Mía? ¿En serio?")],
                             [("o", "¿Guardaste {obj}?"), ("p", "No te hagas ideas.")]]},
            "escalation": {"solo": ["No pienso perder.", "¿Dónde has puesto {obj}?"],
                           "duo": [[("o", "Dame {obj}."), ("p", "Ni lo sueñes.")],
                                   [("p", "Eres imposible."), ("o", "Y tú te estás sonrojando.")]]},
            "reveal": {"solo": ["Espera... ¿lo hizo por mí?", "Oh, no. Me gusta."],
                       "duo": [[("p", "¿Hiciste eso por mí?"), ("o", "No lo hagas raro.")]]},
            "cliffhanger": {"solo": ["¿Se acaban de apagar las luces?", "No puede ser quien creo."],
                            "duo": [[("o", "¿Has oído eso?")], [("p", "{other}... no te muevas.")]]},
        },
        "drama": {
            "hook": {"solo": ["Creen que soy otra persona.", "Sonríe. Nadie lo sabrá."],
                     "duo": [[("o", "¡Qué alegría verte por aquí!"), ("p", "...¿Gracias?")]]},
            "setup": {"solo": ["Un día más. Puedo con esto.", "Aquí nadie me mira dos veces."],
                      "duo": [[("o", "Todo está listo, como siempre."), ("p", "Claro que sí.")],
                              [("o", "Olvidaste {obj} otra vez."), ("p", "No volverá a pasar.")]]},
            "turn": {"solo": ["Podría decirles la verdad.", "¿Por qué aparece mi nombre en {obj}?"],
                     "duo": [[("o", "¿No te acuerdas de mí?"), ("p", "¿Debería?")],
                             [("p", "¿Por qué tienes {obj}?"), ("o", "Porque primero fue tuyo.")]]},
            "escalation": {"solo": ["No puedo seguir así.", "Si encuentran {obj}, se acabó."],
                           "duo": [[("o", "No eres quien dices ser."), ("p", "Yo nunca dije nada.")],
                                   [("p", "No puedes probarlo."), ("o", "Obsérvame.")]]},
            "reveal": {"solo": ["Nunca se trató de mí.", "Todo lo que construí era mentira."],
                       "duo": [[("p", "Puedo explicarlo."), ("o", "Pues empieza a hablar.")],
                               [("o", "Sé lo de {obj}."), ("p", "¿Desde cuándo?")]]},
            "cliffhanger": {"solo": ["¿Entonces quién está en la puerta?", "Lo saben."],
                            "duo": [[("o", "Sé exactamente quién eres.")], [("p", "¡{other}, espera!")]]},
        },
    },
}
_ACTIONS: dict[str, dict[str, dict[str, list[str]]]] = {
    "en": {
        "setup": {"solo": ["{name} goes through the usual routine in {place}, {obj} never far from reach.",
                           "{name} tries to act normal in {place}, keeping {obj} within reach."],
                  "duo": ["{name} and {other} trade guarded looks across {place}, {obj} between them.",
                          "{other} watches {name} work in {place}, eyes drifting to {obj}."]},
        "turn": {"solo": ["{name} notices a detail on {obj} that changes everything.",
                          "{name} turns {obj} over and freezes at what is underneath."],
                 "duo": ["{other} appears in {place} and stares straight at {obj}.",
                         "{other} steps out of the shadows; {name} hides {obj} a second too late."]},
        "escalation": {"solo": ["{name} searches {place} frantically, {obj} clutched tight.",
                                "{name} backs away as the walls of {place} seem to close in."],
                       "duo": ["{other} corners {name}, demanding {obj}.",
                               "{name} and {other} argue over {obj}, voices rising."]},
        "reveal": {"solo": ["Close on {obj}, and on what {name} feared all along.",
                            "{name} finally understands what {obj} means and goes pale."],
                   "duo": ["{other} reveals the truth about {obj}; {name} goes pale.",
                           "{name} holds up {obj} and {other} cannot deny it any longer."]},
        "cliffhanger": {"solo": ["{name} looks up: someone is already standing in {place}.",
                                 "The lights flicker; {name} finally reads {obj} as a warning."],
                        "duo": ["{other} leans in and whispers one word; {name} freezes.",
                                "{name} turns to {other}, but {other} is staring at something behind {name}."]},
    },
    "es": {
        "setup": {"solo": ["{name} sigue su rutina en {place}, con {obj} siempre a mano.",
                           "{name} intenta actuar con normalidad en {place}, con {obj} al alcance."],
                  "duo": ["{name} y {other} cruzan miradas recelosas en {place}, con {obj} entre ambos.",
                          "{other} observa a {name} en {place}, con la vista fija en {obj}."]},
        "turn": {"solo": ["{name} descubre un detalle en {obj} que lo cambia todo.",
                          "{name} da la vuelta a {obj} y se queda sin aliento."],
                 "duo": ["{other} aparece en {place} y mira fijamente {obj}.",
                         "{other} sale de las sombras; {name} esconde {obj} un segundo tarde."]},
        "escalation": {"solo": ["{name} registra {place} sin descanso, sin soltar {obj}.",
                                "{name} retrocede mientras {place} parece encogerse."],
                       "duo": ["{other} acorrala a {name} y exige {obj}.",
                               "{name} y {other} discuten por {obj}; las voces suben."]},
        "reveal": {"solo": ["Primer plano de {obj}: justo lo que {name} temía.",
                            "{name} por fin entiende lo que significa {obj} y palidece."],
                   "duo": ["{other} revela la verdad sobre {obj}; {name} palidece.",
                           "{name} levanta {obj} y {other} ya no puede negarlo."]},
        "cliffhanger": {"solo": ["{name} levanta la vista: alguien ya está en {place}.",
                                 "Las luces parpadean; {name} entiende por fin la advertencia de {obj}."],
                        "duo": ["{other} se inclina y susurra una palabra; {name} se congela.",
                                "{name} se gira hacia {other}, pero {other} sonríe a algo detrás."]},
    },
}
_HOOK_FALLBACK = {"en": "Open on {name} in {place}. {logline}", "es": "Empieza con {name} en {place}. {logline}"}
_TITLES = {  # {Obj}/{obj}: the logline's first prop; {Noun}/{noun}: the protagonist
    "en": {"prop": ["The {Obj}", "The {Obj} Knows", "Whoever Left the {Obj}", "Don't Touch the {Obj}"],
           "person": ["The {Noun}'s Secret", "The Last {Noun}", "Not Your Average {Noun}"]},
    "es": {"prop": ["{Obj}", "El secreto de {obj}", "Nadie debía tocar {obj}"],
           "person": ["El secreto de {noun}", "La última noche de {noun}"]},
}


# --- reading the logline -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Person:
    noun: str  # singular, as it should read in a description ("night-shift nurse")
    gender: str  # "f", "m" or "" when the logline does not say


@dataclass(frozen=True)
class _Subject:
    people: tuple[_Person, ...]  # one, or several for "Two rival food-truck owners"
    noun_phrase: str  # as written, determiner lower-cased: "an intern at a luxury hotel"
    phrase_end: int | None  # where the noun phrase meets its verb; None when no verb was found to split at
    head_end: int  # where the head noun ends


def _person_lookup(word: str, language: str) -> tuple[str, bool, str] | None:
    """(singular noun, is plural, gender) for a person noun, else None."""
    lexicon = _PERSON_ES if language == "es" else _PERSON_EN
    if word in lexicon:
        return word, False, lexicon[word]
    if word in _IRREGULAR_PLURALS:
        singular = _IRREGULAR_PLURALS[word]
        return singular, True, lexicon.get(singular, "")
    for suffix in ("es", "s"):
        if word.endswith(suffix) and word[: -len(suffix)] in lexicon:
            return word[: -len(suffix)], True, lexicon[word[: -len(suffix)]]
    return None


def _punctuation_between(text: str, left: _Token, right: _Token) -> bool:
    return bool(text[left.end : right.start].strip())


def _parse_subject(text: str, tokens: list[_Token], language: str) -> _Subject | None:
    """The protagonist(s) from a leading noun phrase: 'A night-shift nurse', 'Two rival food-truck owners'."""
    if not tokens or text[: tokens[0].start].strip():
        return None  # the logline opens with a quote or other punctuation, not a noun phrase
    determiner = tokens[0].lower
    if determiner not in _SINGULAR_DETERMINERS | _PLURAL_DETERMINERS | _ANY_DETERMINERS:
        return None
    window: list[_Token] = []
    for previous, token in zip(tokens, tokens[1:7]):
        if token.lower in _STOP_WORDS or token.lower in _VERB_HINTS or _punctuation_between(text, previous, token):
            break
        window.append(token)
    matches = [(i, found) for i, t in enumerate(window) if (found := _person_lookup(t.lower, language))]
    # "A chef cooks": after a singular determiner a plural-looking word is the verb, not a second head.
    if determiner in _SINGULAR_DETERMINERS:
        matches = [m for m in matches if not m[1][1]]
    elif determiner in _NUMBER_WORDS:
        matches = [m for m in matches if m[1][1]]
    if not matches:
        return None
    if language == "es":
        index, (noun, plural, gender) = matches[0]  # Spanish heads come first, adjectives follow
    else:
        heads = [m for m in matches if m[1][0] not in _MODIFIER_NOUNS] or matches
        index, (noun, plural, gender) = heads[-1]  # English heads come last
    head = window[index]

    # Extend over trailing adjectives or a prepositional phrase up to the verb, so the appositive reads whole:
    # "Maya, an intern at a luxury hotel, is mistaken ...".
    phrase_end = None
    following = [t for t in tokens if t.start >= head.end]
    for previous, token in zip([head] + following, following[:10]):
        if _punctuation_between(text, previous, token):
            break
        if token.lower in _VERB_HINTS:
            phrase_end = previous.end
            break
    modifiers = [t.text.lower() for t in window[:index]] if language == "en" else []
    if not gender and language == "es":
        gender = {"un": "m", "el": "m", "unos": "m", "los": "m", "una": "f", "la": "f", "unas": "f", "las": "f"}.get(
            determiner, ""
        )
    count = _NUMBER_WORDS.get(determiner, 2) if plural else 1
    people = tuple(_Person(" ".join(modifiers + [noun]), gender) for _ in range(min(count, 3)))
    phrase = text[tokens[0].start : phrase_end or head.end]
    return _Subject(people, phrase[:1].lower() + phrase[1:], phrase_end, head.end)


def _pronoun_gender(words: list[str]) -> str:
    feminine = sum(w in {"she", "her", "hers", "herself", "ella"} for w in words)
    masculine = sum(w in {"he", "him", "his", "himself", "él"} for w in words)
    return "f" if feminine > masculine else "m" if masculine > feminine else ""


@dataclass(frozen=True)
class _Prop:
    phrase: str  # as an object phrase: "the locket", "room 9", "la carta"
    portable: bool  # something a character can hold and hand over


def _props(tokens: list[_Token], language: str) -> list[_Prop]:
    """Concrete objects the logline names, in order of appearance."""
    found: list[_Prop] = []
    for index, token in enumerate(tokens):
        following = tokens[index + 1].text if index + 1 < len(tokens) else ""
        numbered = token.lower in _NUMBERED_PROPS
        if numbered and not following.isdigit():
            continue
        if language == "es":
            phrase = _PROPS_ES.get(token.lower)
        else:
            phrase = f"the {token.lower}" if token.lower in _PROPS_EN else None
        if phrase is None:
            continue
        if numbered:
            phrase = f"{token.lower} {following}" if language == "en" else f"{phrase} {following}"
        if all(p.phrase != phrase for p in found):
            found.append(_Prop(phrase, portable=not numbered))
    return found


def _locations(words: list[str], rng: random.Random) -> list[Location]:
    """Matched locations, most specific first (the first is the episode's main setting)."""
    vocabulary = set(words) | {part for w in words if "-" in w for part in w.split("-")}
    found: list[Location] = []
    for options, keywords in _LOCATION_KEYWORDS:
        if vocabulary & keywords:
            choice = options[0] if len(options) == 1 else rng.choice(options)
            if choice not in found:
                found.append(choice)
    return found or [rng.choice(_DEFAULT_LOCATIONS)]


def _time_of_day(words: list[str], rng: random.Random) -> TimeOfDay:
    for time_of_day, keywords in _TIME_KEYWORDS:
        if keywords & set(words):
            return time_of_day
    return rng.choice(list(TimeOfDay))


def _cue_score(words: list[str], lowered: str, cues: tuple[frozenset[str], tuple[str, ...]]) -> int:
    keywords, phrases = cues
    return sum(w in keywords for w in words) + sum(phrase in lowered for phrase in phrases)


def _genre(words: list[str], lowered: str, threat: bool, rng: random.Random) -> str:
    scores = {genre: _cue_score(words, lowered, _GENRE_CUES[genre]) for genre in _GENRE_PRIORITY}
    scores["mystery"] += int(threat)
    best = max(scores.values())
    if best == 0:
        return rng.choice(["mystery", "drama", "comedy"])
    return next(genre for genre in _GENRE_PRIORITY if scores[genre] == best)


def _quote(text: str) -> str | None:
    """The first quoted line in the logline ('"Don't open the door," the text says'), as a short spoken line."""
    match = _QUOTE_RE.search(text)
    words = match.group(1).strip(" ,.;:—-").split() if match else []
    if not words:
        return None
    return " ".join(words[:14]) + ("…" if len(words) > 14 else ".")


# --- cast --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Role:
    role: str
    person: _Person


def _cast_roles(
    subject: _Subject | None,
    tokens: list[_Token],
    words: list[str],
    language: str,
    genre: str,
    threat: bool,
    location: Location,
) -> list[_Role]:
    """Who the story needs: its protagonist(s), the people it mentions, and, if it names nobody else, the one its
    props or genre imply (a sender for a text, a stranger for a locket); plus an antagonist when it threatens."""
    if subject is not None:
        second_role = "rival" if "rival" in words or "rivals" in words else "ally"
        leads = [_Role("protagonist" if i == 0 else second_role, p) for i, p in enumerate(subject.people)]
    else:
        noun = _PLACE_PROTAGONISTS[language][location]
        leads = [_Role("protagonist", _Person(noun, "f" if language == "es" and noun.endswith("a") else ""))]
    if not leads[0].person.gender:
        leads[0] = _Role("protagonist", _Person(leads[0].person.noun, _pronoun_gender(words)))

    start = subject.head_end if subject else 0
    taken = {role.person.noun.split(" ")[-1] for role in leads}
    mentioned: list[_Person] = []
    for token in tokens:
        found = _person_lookup(token.lower, language) if token.start >= start else None
        if found and found[0] not in taken:
            taken.add(found[0])
            noun = {"family": "family member", "familia": "miembro de la familia"}.get(found[0], found[0])
            mentioned.append(_Person(noun, found[2]))
    if not mentioned and len(leads) == 1:
        vocabulary = set(words)
        english, spanish, gender = next(
            ((en, es, g) for cues, en, es, g in _EXTRA_BY_CUE if cues & vocabulary), _EXTRA_BY_GENRE[genre]
        )
        mentioned.append(_Person(spanish, gender) if language == "es" else _Person(english, ""))

    first_role = _ROLE_BY_GENRE[genre]
    roles = leads[:]
    for index, person in enumerate(mentioned[: 3 - len(roles)]):
        role = first_role if index == 0 else ("antagonist" if first_role != "antagonist" else "ally")
        roles.append(_Role(role, person))
    if threat and len(roles) < 3 and not any(r.role == "antagonist" for r in roles):
        roles.append(_Role("antagonist", _Person("vigilante" if language == "es" else "watcher", "")))
    return roles


def _article(noun: str, language: str, gender: str, definite: bool = False) -> str:
    if language == "es":
        if definite:
            return ("la " if gender == "f" else "el ") + noun
        return ("una " if gender == "f" else "un ") + noun
    if definite:
        return "the " + noun
    vowel_sound = noun[:1].lower() in "aeiou" or noun.lower().startswith(("heir", "hour", "honest"))
    return ("an " if vowel_sound else "a ") + noun


class _Wardrobe:
    """Looks and voices for ``count`` characters, each palette and voice pool drawn without replacement, so no two
    share a skin, hair or outfit colour, hair style, height, espeak variant, pitch or rate; cast cards' traits are
    withdrawn first, so the consistency check can still tell an invented character from a card."""

    def __init__(self, count: int, rng: random.Random, cast: Sequence[Character]):
        self.count, self.rng = count, rng
        self.skins, self.hairs = rng.sample(_SKINS, count), rng.sample(_HAIRS, count)
        self.outfits = rng.sample(_OUTFITS, 2 * count)
        self.pools = {
            key: {g: rng.sample(options[g], len(options[g])) for g in ("f", "m")}
            for key, options in (
                ("hair_style", _HAIR_STYLES), ("height", _HEIGHTS), ("pitch", _PITCHES), ("variant", _VARIANTS)
            )
        }
        self.rates = rng.sample(_RATES, count)
        for card in cast:
            _withdraw_card_traits(card, (self.skins, self.hairs, self.outfits), self.pools, self.rates)

    def dress(self, index: int, gender: str, language: str) -> tuple[Appearance, Voice]:
        appearance = Appearance(
            skin=self.skins[index],
            hair=self.hairs[index],
            outfit=self.outfits[index],
            accent=self.outfits[self.count + index],
            hair_style=self.pools["hair_style"][gender].pop(),
            build=self.rng.choice(list(Build)),
            height=self.pools["height"][gender].pop(),
        )
        voice = Voice(language="es" if language == "es" else "en-us", variant=self.pools["variant"][gender].pop(),
                      pitch=self.pools["pitch"][gender].pop(), rate=self.rates[index])
        return appearance, voice


def _build_characters(roles: list[_Role], language: str, rng: random.Random,
                      cast: Sequence[Character] = ()) -> list[Character]:
    """Characters with distinct names, looks and voices (``_Wardrobe``). Cast cards take the first roles as they
    are."""
    wardrobe = _Wardrobe(len(roles), rng, cast)
    taken_ids: set[str] = {c.id for c in cast} | {_slug(c.name) for c in cast}
    characters = list(cast)
    for index, role in enumerate(roles[len(cast):], start=len(cast)):
        gender = role.person.gender
        name = rng.choice([n for n in _NAMES[(language, gender)] if _slug(n) not in taken_ids])
        taken_ids.add(_slug(name))
        trait = rng.choice(_TRAITS[language][role.role])
        role_label = _ROLE_NAMES_ES[role.role] if language == "es" else role.role
        description = f"{_sentence_start(_article(role.person.noun, language, gender))} ({role_label}). {trait}"
        appearance, voice = wardrobe.dress(index, gender, language)
        characters.append(Character(id=_slug(name), name=name, role=role.role, description=_clip(description, 400),
                                    appearance=appearance, voice=voice))
    return characters


def dress_characters(sketches: Sequence[tuple[str, str, str]], language: str, seed: int,
                     cast: Sequence[Character] = ()) -> list[Character]:
    """Characters for (name, role, description) sketches written elsewhere (by a language model), after the cast
    cards: looks and voices are drawn as the embedded planner draws its own, so everyone stays distinguishable;
    the gender of the voice follows the description's pronouns, else a seeded choice. IDs are the names as
    slugs, made unique."""
    rng = random.Random(seed)
    wardrobe = _Wardrobe(len(cast) + len(sketches), rng, cast)
    taken = {c.id for c in cast}
    characters = list(cast)
    for index, (name, role, description) in enumerate(sketches, start=len(cast)):
        base = _slug(name)[:40] or f"character-{index + 1}"
        slug = next(candidate for candidate in [base] + [f"{base[:60]}-{n}" for n in range(2, 99)]
                    if candidate not in taken)
        taken.add(slug)
        gender = _pronoun_gender([t.lower for t in _tokens(description)]) or rng.choice(["f", "m"])
        appearance, voice = wardrobe.dress(index, gender, language)
        characters.append(Character(id=slug, name=_clip(name, 80), role=_clip(role, 40),
                                    description=_clip(description, 400), appearance=appearance, voice=voice))
    return characters


def _withdraw_card_traits(card: Character, palettes: tuple[list[str], ...], pools: dict, rates: list[int]) -> None:
    """Swap any drawn colour or voice setting a card already uses for an unused one from the same pool, so an
    invented character never shares it (drawn lists keep their length and order otherwise)."""
    look, voice = card.appearance, card.voice
    card_colours = {look.skin, look.hair, look.outfit, look.accent}
    for drawn, pool in zip(palettes, (_SKINS, _HAIRS, _OUTFITS)):
        spare = [c for c in pool if c not in drawn and c not in card_colours]
        for index, colour in enumerate(drawn):
            if colour in card_colours and spare:
                drawn[index] = spare.pop(0)
    for key, value in (("variant", voice.variant), ("pitch", voice.pitch)):
        for options in pools[key].values():
            if value in options and len(options) > 1:
                options.remove(value)
    if voice.rate in rates:
        spare_rates = [r for r in _RATES if r not in rates]
        if spare_rates:
            rates[rates.index(voice.rate)] = spare_rates[0]


# --- arc and timing ----------------------------------------------------------------------------------------------
def arc_beats(shots: int) -> list[Beat]:
    """The six-beat arc stretched or compressed onto ``shots`` shots: hook first, cliffhanger last, the middle
    beats in order (with fewer than four middle shots, the most important: reveal, then turn, then setup).
    A single shot is the hook."""
    if not 1 <= shots <= MAX_SHOTS:
        raise ValueError(f"shots must be between 1 and {MAX_SHOTS}, got {shots}")
    if shots == 1:
        return [Beat.hook]
    middle_count = shots - 2
    if middle_count < len(_MIDDLE_BEATS):
        kept = set(_MIDDLE_PRIORITY[:middle_count])
        middle = [b for b in _MIDDLE_BEATS if b in kept]
    else:
        spread = len(_MIDDLE_BEATS) / middle_count
        middle = [_MIDDLE_BEATS[math.floor((j + 0.5) * spread)] for j in range(middle_count)]
    return [Beat.hook] + [Beat(b) for b in middle] + [Beat.cliffhanger]


def estimate_dialogue_s(dialogue: list[DialogueLine], characters: list[Character]) -> float:
    """Seconds a shot needs for its dialogue: speech at each speaker's espeak rate (words per minute), plus a
    lead-in, gaps between lines and a tail, times a safety margin. 0 for a silent shot."""
    if not dialogue:
        return 0.0
    rates = {c.id: c.voice.rate for c in characters}
    speech = sum(max(1, _spoken_words(line.text)) * 60.0 / rates[line.speaker] for line in dialogue)
    return SPEECH_MARGIN * (LEAD_IN_S + speech + LINE_GAP_S * (len(dialogue) - 1) + TAIL_S)


def within_longest_shot(dialogue: list[DialogueLine], characters: list[Character]) -> list[DialogueLine]:
    """The dialogue without the replies that even the longest shot (20 s) could not hold."""
    while dialogue and estimate_dialogue_s(dialogue, characters) * FPS > MAX_SHOT_FRAMES:
        dialogue = dialogue[:-1]
    return dialogue


def _allocate_frames(beats: list[Beat], target_s: float, rng: random.Random) -> list[int]:
    """Whole-frame durations summing to the target, weighted by beat with a little seeded variation."""
    weights = [_BEAT_WEIGHT[b.value] * rng.uniform(0.88, 1.12) for b in beats]
    fractions = [w / sum(weights) for w in weights]
    # Every shot must stay within the manifest's 1-20 s; a target that cannot allow that moves to the nearest
    # total that can.
    lowest = math.ceil(max(MIN_SHOT_FRAMES / f for f in fractions))
    highest = math.floor(min(MAX_SHOT_FRAMES / f for f in fractions))
    total = min(max(round(target_s * FPS), lowest), highest)
    raw = [total * f for f in fractions]
    frames = [math.floor(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (frames[i] - raw[i], i))
    for i in by_remainder[: total - sum(frames)]:
        frames[i] += 1
    return frames


# --- shots -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Story:
    language: str
    logline: str
    tone: str  # which dialogue pool: "mystery", "light" or "drama"
    prop: str | None  # the logline's first portable prop, which lines and actions refer to
    quote: str | None


def _pick(options: list, rng: random.Random, avoid: object = None):
    """A seeded choice that avoids repeating the previous shot's value when there is an alternative."""
    fresh = [o for o in options if o != avoid]
    return rng.choice(fresh or options)


def _pick_fresh(options: list, rng: random.Random, history: list[str]):
    """A seeded choice among the least recently used options, so long episodes rotate through their lines instead
    of repeating one shot after another."""
    last_use = {repr(o): max((i for i, h in enumerate(history) if h == repr(o)), default=-1) for o in options}
    oldest = min(last_use.values())
    choice = rng.choice([o for o in options if last_use[repr(o)] == oldest])
    history.append(repr(choice))
    return choice


def _cast_shots(beats: list[Beat], leads: list[Character], others: list[Character]) -> list[list[Character]]:
    """Who is on screen per shot: the protagonist(s) carry the hook; the mystery (or ally) arrives for the turn and
    the reveal; the antagonist takes the escalation and the cliffhanger."""
    antagonist = next((c for c in others if c.role == "antagonist"), None)
    companion = next((c for c in others if c.role in ("ally", "love interest", "rival")), None)
    revealer = next((c for c in others if c.role != "antagonist"), antagonist) or next(iter(leads[1:]), None)
    opponent = antagonist or next(iter(others), None) or next(iter(leads[1:]), None)
    lead = leads[0]
    casting = {
        "hook": leads,
        "setup": leads if len(leads) > 1 else [lead] + ([companion] if companion else []),
        "turn": [lead] + ([revealer] if revealer else []),
        "reveal": [lead] + ([revealer] if revealer else []),
        "escalation": [lead] + ([opponent] if opponent else []),
        "cliffhanger": [lead] + ([opponent] if opponent else []),
    }
    cast_per_shot = [list(casting[beat.value]) for beat in beats]
    # Anyone the arc left out joins a middle shot with room; with no such shot they are left out of the episode.
    for character in leads + others:
        if not any(character in in_shot for in_shot in cast_per_shot):
            room = next((s for s in cast_per_shot[1:-1] if len(s) < 3), None)
            if room is not None:
                room.append(character)
    return cast_per_shot


def _dialogue(
    beat: str,
    in_shot: list[Character],
    story: _Story,
    place: str,
    obj: str,
    wanted: int,
    rng: random.Random,
    history: list[str],
    first_shot: bool,
) -> list[DialogueLine]:
    lead, other = in_shot[0], (in_shot[1] if len(in_shot) > 1 else None)
    pool = _DIALOGUE[story.language][story.tone][beat]
    if first_shot and story.quote:
        lines = [(lead.id, story.quote)]  # the logline's own quoted line opens the episode
    elif other is not None:
        exchange = _pick_fresh(pool["duo"], rng, history)
        lines = [(lead.id if slot == "p" else other.id, text) for slot, text in exchange][:wanted]
    else:
        lines = [(lead.id, _pick_fresh(pool["solo"], rng, history))]
    values = {"obj": obj, "other": other.name if other else "", "name": lead.name, "place": place}
    return [DialogueLine(speaker=speaker, text=_clip(text.format(**values), 280)) for speaker, text in lines]


def _hook_action(story: _Story, subject: _Subject | None, leads: list[Character], place: str) -> str:
    names = (" y " if story.language == "es" else " and ").join(c.name for c in leads)
    if subject is not None and subject.phrase_end is not None:
        # "Maya, a night-shift nurse, realizes the patient in room 9 checked out thirty years ago."
        return f"{names}, {subject.noun_phrase},{story.logline[subject.phrase_end:]}"
    return _HOOK_FALLBACK[story.language].format(name=names, place=place, logline=story.logline)


def _title(story: _Story, props: list[_Prop], subject: _Subject | None, lead: _Person, rng: random.Random) -> str:
    if story.quote and len(story.quote.split()) <= 7:
        text = story.quote.rstrip(".…!?")
        return _title_case(text) if story.language == "en" else _sentence_start(text)
    if props and not props[0].portable:
        return _sentence_start(props[0].phrase) if story.language == "es" else _title_case(props[0].phrase)
    if subject is not None and len(subject.people) > 1:
        return _title_case(subject.noun_phrase) if story.language == "en" else _sentence_start(subject.noun_phrase)
    templates = _TITLES[story.language]
    template = rng.choice(templates["prop"] if props else templates["person"])
    if story.language == "en":
        bare = props[0].phrase.removeprefix("the ") if props else ""
        return _title_case(template.format(Obj=_title_case(bare), Noun=_title_case(lead.noun)))
    obj = props[0].phrase if props else ""
    noun = _article(lead.noun, "es", lead.gender, definite=True)
    return template.format(Obj=_sentence_start(obj), obj=obj, noun=noun).replace(" de el ", " del ")


def plan_episode(
    logline: str, episode_id: str, shots: int = 6, seed: int = 0, target_duration_s: float = 30.0,
    cast: Sequence[Character] = (),
) -> EpisodeManifest:
    """Plan a complete episode from a logline, deterministically for the same (logline, episode_id, shots, seed).

    ``cast`` (character cards, a series' regulars) fills the story's roles in order, protagonist first, before
    any character is invented; cards beyond the roles the story needs join it as extra characters.

    Shot durations sum to ``target_duration_s`` in whole frames (kept within the manifest's 1-20 s per shot); any
    shot too short for its dialogue is then lengthened, so the episode may run longer than the target."""
    check_id(episode_id, "episode id")
    if isinstance(shots, bool) or not isinstance(shots, int) or not 1 <= shots <= MAX_SHOTS:
        raise ValueError(f"shots must be an integer between 1 and {MAX_SHOTS}, got {shots!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}")
    if isinstance(target_duration_s, bool) or not isinstance(target_duration_s, (int, float)) or not (
        math.isfinite(target_duration_s) and target_duration_s > 0
    ):
        raise ValueError(f"target_duration_s must be a positive number of seconds, got {target_duration_s!r}")

    text = clean_logline(logline)
    language = detect_language(text)
    tokens = _tokens(text)
    words = [t.lower for t in tokens]
    lowered = text.lower()

    setting_rng = _rng(seed, text, "setting")
    locations = _locations(words, setting_rng)
    time_of_day = _time_of_day(words, setting_rng)
    threat = _cue_score(words, lowered, _THREAT_CUES) > 0
    genre = _genre(words, lowered, threat, setting_rng)

    cast_rng = _rng(seed, text, "cast")
    subject = _parse_subject(text, tokens, language)
    roles = [
        _Role(r.role, _Person(r.person.noun, r.person.gender or cast_rng.choice(["f", "m"])))
        for r in _cast_roles(subject, tokens, words, language, genre, threat, locations[0])
    ]
    if len(cast) > MAX_CHARACTERS or len({c.id for c in cast}) != len(cast):
        raise ValueError(f"cast must be at most {MAX_CHARACTERS} distinct characters, got {[c.id for c in cast]}")
    roles += [_Role(card.role, _Person(card.role, "")) for card in cast[len(roles):]]
    characters = _build_characters(roles, language, cast_rng, cast)
    lead_count = len(subject.people) if subject else 1
    leads, others = characters[:lead_count], characters[lead_count:]

    props = _props(tokens, language)
    portable = [p.phrase for p in props if p.portable]
    places = _PLACE_NAMES[language]
    if genre in ("mystery", "supernatural") or threat:
        tone = "mystery"
    else:
        tone = "light" if genre in ("comedy", "romance") else "drama"
    story = _Story(
        language=language,
        logline=text,
        tone=tone,
        prop=portable[0] if portable else None,
        quote=_quote(text),
    )

    beats = arc_beats(shots)
    shot_rng = _rng(seed, text, f"shots:{shots}")
    frames = _allocate_frames(beats, target_duration_s, shot_rng)
    cast_per_shot = _cast_shots(beats, leads, others)

    built: list[Shot] = []
    line_history: list[str] = []
    action_history: list[str] = []
    previous_camera = previous_framing = None
    for index, (beat, in_shot, shot_frames) in enumerate(zip(beats, cast_per_shot, frames)):
        name = beat.value
        location = locations[1] if name == "setup" and len(locations) > 1 else locations[0]
        obj = story.prop or _PLACE_PROPS[language][location]  # a logline with no props borrows one from the place
        camera = _pick(_CAMERAS[name], shot_rng, previous_camera)
        framings = [f for f in _FRAMINGS[name] if len(in_shot) > 1 or f not in _PAIR_FRAMINGS] or [Framing.medium]
        framing = Framing.wide if index == 0 else _pick(framings, shot_rng, previous_framing)
        previous_camera, previous_framing = camera, framing
        mood = shot_rng.choice(_MOOD_ARCS[genre][name])

        if index == 0:
            action = _hook_action(story, subject, leads, places[location])
        else:
            template = _pick_fresh(_ACTIONS[language][name]["duo" if len(in_shot) > 1 else "solo"], shot_rng,
                                   action_history)
            action = template.format(name=in_shot[0].name, other=in_shot[1].name if len(in_shot) > 1 else "",
                                     obj=obj, place=places[location])
        action = _sentence_start(_clip(action, MAX_ACTION_CHARS))

        wanted = {"hook": 1, "setup": shot_rng.choice([1, 2]), "turn": 2, "escalation": 2,
                  "reveal": shot_rng.choice([1, 2]), "cliffhanger": 1}[name]
        dialogue = _dialogue(name, in_shot, story, places[location], obj, wanted, shot_rng, line_history, index == 0)
        # Never plan dialogue that cannot fit. A reply the shot has no time for is dropped; with fast cutting, a
        # beat's later shots go silent rather than stretch the episode, while its first shot keeps a line and
        # grows to fit it. A line even a 20 s shot could not hold is dropped.
        while len(dialogue) > 1 and estimate_dialogue_s(dialogue, characters) * FPS > shot_frames:
            dialogue = dialogue[:-1]
        if beat in beats[:index] and estimate_dialogue_s(dialogue, characters) * FPS > shot_frames:
            dialogue = []
        dialogue = within_longest_shot(dialogue, characters)
        shot_frames = max(shot_frames, math.ceil(estimate_dialogue_s(dialogue, characters) * FPS))
        duration_s = shot_frames / FPS

        built.append(
            Shot(
                id=f"s{index + 1:02d}",
                beat=beat,
                duration_s=duration_s,
                camera=camera,
                action=action,
                mood=mood,
                framing=framing,
                location=location,
                time_of_day=time_of_day,
                characters=[c.id for c in in_shot],
                dialogue=dialogue,
                keyframes=1 if duration_s <= 2.0 else 3 if duration_s >= 7.0 else 2,
                seed=shot_seed(seed, index),
            )
        )

    on_screen = {cid for shot in built for cid in shot.characters}
    return EpisodeManifest(
        episode_id=episode_id,
        title=_clip(_title(story, props, subject, roles[0].person, _rng(seed, text, "title")), 120),
        logline=text,
        language=language,
        seed=seed,
        characters=[c for c in characters if c.id in on_screen],
        shots=built,
    )
