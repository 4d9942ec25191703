"""Draw docs/shapes.png, the README's picture: captions rendered by the bundled model, two seeds each.

python docs/make_picture.py
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ipyimagine import Imagine, Session, imagine
from ipyimagine.display import enlarged

CAPTIONS = [
    "a red circle on the left on a blue background",
    "a yellow square at the top on a black background",
    "a white triangle on the right on a green background",
    "an orange circle at the bottom on a purple background",
    "a blue triangle in the middle on a white background",
]


def main() -> None:
    session = Session(Imagine(backend="diffusers", model="", log=False, cache=False))
    cell, label_h = 192, 34
    sheet = Image.new("RGB", (len(CAPTIONS) * cell, 2 * cell + label_h), "white")
    pen = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    for column, caption in enumerate(CAPTIONS):
        gen = imagine(caption, seed=1, n=2, expand=False, session=session)
        words = caption.split()
        pen.text((column * cell + 6, 2), " ".join(words[: len(words) // 2]), fill="black", font=font)
        pen.text((column * cell + 6, 16), " ".join(words[len(words) // 2 :]), fill="black", font=font)
        for row, image in enumerate(gen.images):
            sheet.paste(enlarged(image).resize((cell - 4, cell - 4)), (column * cell + 2, label_h + row * cell + 2))
    path = Path(__file__).with_name("shapes.png")
    sheet.save(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
