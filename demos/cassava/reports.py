"""What the demo tells a grower: a short report per class, the "uncertain"
explanation, and the untrained-model notice. Plain text, no model code.

The facts are general public agronomy (FAO, IITA and national extension
leaflets); the advice is deliberately conservative and always points to a
local extension officer for confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass

from demos.cassava.labels import Disease


@dataclass(frozen=True)
class Report:
    what: str
    symptoms: str
    action: str


REPORTS: dict[str, Report] = {
    "CBB": Report(
        what="A bacterial disease caused by *Xanthomonas phaseoli* pv. *manihotis*. It spreads "
             "through infected stem cuttings, rain splash, insects and contaminated tools.",
        symptoms="Angular, water-soaked spots on leaves that turn brown; leaf blight and wilting; "
                 "sticky gum on stems; die-back of shoots in severe cases.",
        action="Remove and burn infected plants; take cuttings only from healthy fields; prefer "
               "tolerant varieties; avoid working in the field when plants are wet; clean tools "
               "between plants; rotate with a non-host crop or fallow for a season.",
    ),
    "CBSD": Report(
        what="A viral disease (cassava brown streak viruses, CBSV and UCBSV) spread by whiteflies "
             "(*Bemisia tabaci*) and by infected cuttings. Roots can be ruined even when the leaves "
             "look only mildly affected.",
        symptoms="Yellow, feathery patches along the secondary veins of older leaves; brown streaks "
                 "on green stems; dry, brown, corky rot inside the storage roots.",
        action="Check a few roots for brown rot; harvest affected plots early; uproot and destroy "
               "infected plants; never take cuttings from them; replant with certified clean "
               "material of a tolerant variety; report it to the local extension service.",
    ),
    "CGM": Report(
        what="Cassava green mottle, attributed to a nepovirus. Similar yellow speckling is also "
             "caused by cassava green mite (*Mononychellus tanajoa*), so look under the leaves "
             "for mites before deciding.",
        symptoms="Small yellow spots and mottling on young leaves, sometimes with distorted, "
                 "twisted leaf edges; plants often grow out of mild symptoms.",
        action="Use clean cuttings and remove badly affected plants. If mites are present, "
               "tolerant varieties and the natural enemy *Typhlodromalus aripo* (promoted by "
               "extension programmes) control them better than spraying.",
    ),
    "CMD": Report(
        what="The most damaging cassava disease in Africa, caused by cassava mosaic "
             "begomoviruses spread by whiteflies and, above all, by infected cuttings.",
        symptoms="A yellow-green mosaic on the leaves, leaflets that are narrow, twisted or "
                 "reduced in size, and stunted plants with lower yield.",
        action="Pull out infected plants early (roguing) and do not use them for cuttings; plant "
               "CMD-resistant varieties and clean planting material; keep new plots away from "
               "infected fields.",
    ),
    "Healthy": Report(
        what="No sign of the four diseases the model knows.",
        symptoms="Uniformly green, well-formed leaves.",
        action="Keep scouting every week or two, especially after rain and whitefly outbreaks; "
               "keep using clean cuttings from healthy plants.",
    ),
}

DISCLAIMER = ("_Automated screening from one photo, not a diagnosis. Confirm with a local "
              "extension officer or plant clinic before acting on a whole field._")

RETAKE_TIPS = ("Retake the photo: one leaf (or a few) filling the frame, in focus, in daylight "
               "without harsh shadows; include the symptoms you are worried about.")


def disease_report(disease: Disease, confidence: float) -> str:
    report = REPORTS[disease.code]
    return (
        f"### {disease.display}: {confidence:.0%} confidence\n\n"
        f"**What it is.** {report.what}\n\n"
        f"**Symptoms.** {report.symptoms}\n\n"
        f"**What to do.** {report.action}\n\n"
        f"{DISCLAIMER}"
    )


def uncertain_report(disease: Disease, confidence: float, threshold: float) -> str:
    return (
        f"### Uncertain\n\n"
        f"The most likely class is **{disease.display}** at {confidence:.0%}, below the "
        f"{threshold:.0%} this model needs to give an answer. The photo may be unclear, show "
        f"several problems at once, or show something the model was not trained on.\n\n"
        f"{RETAKE_TIPS}\n\n{DISCLAIMER}"
    )


def untrained_report(disease: Disease) -> str:
    """Never dressed up as a diagnosis: the class came from random weights."""
    return (
        "### No diagnosis: this model is untrained\n\n"
        f"The weights are random, so the top class (*{disease.display}*) and every probability "
        "are meaningless. Configure trained weights (`--model cassava=/path/to/folder`) to get "
        "a real answer."
    )


def details(disease: Disease, confidence: float, threshold: float, uncertain: bool, trained: bool) -> str:
    if not trained:
        return untrained_report(disease)
    if uncertain:
        return uncertain_report(disease, confidence, threshold)
    return disease_report(disease, confidence)
