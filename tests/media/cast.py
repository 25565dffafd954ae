"""Characters shared by the renderer and character-bundle tests."""

CHARACTERS = [
    {"id": "nora", "name": "Nora Vale", "role": "detective", "description": "a detective in a navy suit",
     "appearance": {"skin": "#e8b894", "hair": "#3a2418", "outfit": "#24345c", "accent": "#d4a030",
                    "hair_style": "long", "build": "slim", "height": 0.96}, "voice": {}},
    {"id": "omar", "name": "Omar Reyes", "role": "barista", "description": "a cheerful barista",
     "appearance": {"skin": "#8a5a3c", "hair": "#141010", "outfit": "#c0462c", "accent": "#f0d060",
                    "hair_style": "short", "build": "broad", "height": 1.05}, "voice": {}},
    {"id": "lena", "name": "Lena Park", "role": "doctor", "description": "a calm surgeon",
     "appearance": {"skin": "#f0caa6", "hair": "#d8a440", "outfit": "#e8eef0", "accent": "#3a8c9a",
                    "hair_style": "bun", "build": "average", "height": 0.95}, "voice": {}},
]  # fmt: skip
