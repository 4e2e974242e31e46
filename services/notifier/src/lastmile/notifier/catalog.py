"""The default wording of every message in English, German, French and Spanish, and each language's dates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Texts:
    sms: str
    sms_short: str  # used when the long one would need a second SMS part
    subject: str
    text: str  # the email's paragraph


@dataclass(frozen=True)
class Language:
    code: str
    kinds: dict[str, Texts]
    greeting: str
    button: str
    failed_button: str
    footer: str
    unsubscribe: str
    customer: str
    window: str  # {start} {end}
    around: str  # {time}
    today: str
    clock: Callable[[datetime], str]
    date: Callable[[datetime], str]


def _hm(t: datetime) -> str:
    return t.strftime("%H:%M")


def _names(days: str, months: str) -> tuple[list[str], list[str]]:
    return days.split(), months.split()


_EN = _names("Mon Tue Wed Thu Fri Sat Sun", "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec")
_DE = _names("Mo Di Mi Do Fr Sa So", "Jan Feb Mär Apr Mai Jun Jul Aug Sep Okt Nov Dez")
_FR = _names("lun mar mer jeu ven sam dim", "janv févr mars avr mai juin juil août sept oct nov déc")
_ES = _names("lun mar mié jue vie sáb dom", "ene feb mar abr may jun jul ago sep oct nov dic")

EN = Language(
    code="en",
    kinds={
        "scheduled": Texts(
            "$merchant: your delivery is planned for $date $window. Track it: $link",
            "$merchant: delivery $date $window. $link",
            "Your $merchant delivery is planned for $date",
            "Your delivery from $merchant is planned for $date $window.",
        ),
        "out_for_delivery": Texts(
            "$merchant: your parcel is out for delivery and arrives $arrival. Track it: $link",
            "$merchant: out for delivery, arrives $arrival. $link",
            "Your $merchant parcel is out for delivery",
            "Your parcel from $merchant is out for delivery and arrives $arrival.",
        ),
        "eta_changed": Texts(
            "$merchant: new arrival time, your parcel now arrives $arrival. Track it: $link",
            "$merchant: now arriving $arrival. $link",
            "New arrival time for your $merchant parcel",
            "Your parcel from $merchant now arrives $arrival.",
        ),
        "arriving_soon": Texts(
            "$merchant: your parcel arrives soon, $arrival. Please be ready. $link",
            "$merchant: arriving soon, $arrival. $link",
            "Your $merchant parcel arrives soon",
            "Your parcel from $merchant arrives soon, $arrival. Please be ready to receive it.",
        ),
        "delivered": Texts(
            "$merchant: your parcel has been delivered. Details: $link",
            "$merchant: delivered. $link",
            "Your $merchant parcel has been delivered",
            "Your parcel from $merchant has been delivered.",
        ),
        "failed": Texts(
            "$merchant: we could not deliver your parcel today. Choose another day or a pickup point: $link",
            "$merchant: not delivered. Pick a new day or pickup point: $link",
            "We could not deliver your $merchant parcel",
            "We could not deliver your parcel from $merchant today. Choose another day or a pickup point.",
        ),
    },
    greeting="Hello $name,",
    button="Track your parcel",
    failed_button="Choose another day or a pickup point",
    footer="You receive this email because you ordered from $merchant.",
    unsubscribe="Unsubscribe from these emails",
    customer="there",
    window="between {start} and {end}",
    around="around {time}",
    today="today",
    clock=_hm,
    date=lambda t: f"{_EN[0][t.weekday()]} {t.day} {_EN[1][t.month - 1]}",
)

DE = Language(
    code="de",
    kinds={
        "scheduled": Texts(
            "$merchant: Ihre Lieferung ist für $date $window geplant. Verfolgen: $link",
            "$merchant: Lieferung $date $window. $link",
            "Ihre Lieferung von $merchant ist für $date geplant",
            "Ihre Lieferung von $merchant ist für $date $window geplant.",
        ),
        "out_for_delivery": Texts(
            "$merchant: Ihr Paket ist unterwegs und kommt $arrival. Verfolgen: $link",
            "$merchant: unterwegs, kommt $arrival. $link",
            "Ihr Paket von $merchant ist unterwegs",
            "Ihr Paket von $merchant ist unterwegs und kommt $arrival.",
        ),
        "eta_changed": Texts(
            "$merchant: neue Ankunftszeit, Ihr Paket kommt jetzt $arrival. Verfolgen: $link",
            "$merchant: kommt jetzt $arrival. $link",
            "Neue Ankunftszeit für Ihr Paket von $merchant",
            "Ihr Paket von $merchant kommt jetzt $arrival.",
        ),
        "arriving_soon": Texts(
            "$merchant: Ihr Paket kommt gleich, $arrival. Bitte seien Sie bereit. $link",
            "$merchant: kommt gleich, $arrival. $link",
            "Ihr Paket von $merchant kommt gleich",
            "Ihr Paket von $merchant kommt gleich, $arrival. Bitte seien Sie bereit.",
        ),
        "delivered": Texts(
            "$merchant: Ihr Paket wurde zugestellt. Details: $link",
            "$merchant: zugestellt. $link",
            "Ihr Paket von $merchant wurde zugestellt",
            "Ihr Paket von $merchant wurde zugestellt.",
        ),
        "failed": Texts(
            "$merchant: Wir konnten Ihr Paket heute nicht zustellen. Neuen Tag oder Abholstelle wählen: $link",
            "$merchant: nicht zugestellt. Neuer Tag oder Abholstelle: $link",
            "Wir konnten Ihr Paket von $merchant nicht zustellen",
            "Wir konnten Ihr Paket von $merchant heute nicht zustellen. Wählen Sie einen anderen Tag oder eine Abholstelle.",
        ),
    },
    greeting="Hallo $name,",
    button="Sendung verfolgen",
    failed_button="Neuen Tag oder Abholstelle wählen",
    footer="Sie erhalten diese E-Mail, weil Sie bei $merchant bestellt haben.",
    unsubscribe="Von diesen E-Mails abmelden",
    customer="",
    window="zwischen {start} und {end} Uhr",
    around="gegen {time} Uhr",
    today="heute",
    clock=_hm,
    date=lambda t: f"{_DE[0][t.weekday()]} {t.day}. {_DE[1][t.month - 1]}",
)

FR = Language(
    code="fr",
    kinds={
        "scheduled": Texts(
            "$merchant : votre livraison est prévue le $date $window. Suivi : $link",
            "$merchant : livraison le $date $window. $link",
            "Votre livraison $merchant est prévue le $date",
            "Votre livraison $merchant est prévue le $date $window.",
        ),
        "out_for_delivery": Texts(
            "$merchant : votre colis est en cours de livraison, arrivée $arrival. Suivi : $link",
            "$merchant : en livraison, arrivée $arrival. $link",
            "Votre colis $merchant est en cours de livraison",
            "Votre colis $merchant est en cours de livraison, arrivée $arrival.",
        ),
        "eta_changed": Texts(
            "$merchant : nouvelle heure d'arrivée, votre colis arrive $arrival. Suivi : $link",
            "$merchant : arrivée $arrival. $link",
            "Nouvelle heure d'arrivée pour votre colis $merchant",
            "Votre colis $merchant arrive désormais $arrival.",
        ),
        "arriving_soon": Texts(
            "$merchant : votre colis arrive bientôt, $arrival. Soyez prêt. $link",
            "$merchant : arrivée imminente, $arrival. $link",
            "Votre colis $merchant arrive bientôt",
            "Votre colis $merchant arrive bientôt, $arrival. Merci de vous tenir prêt.",
        ),
        "delivered": Texts(
            "$merchant : votre colis a été livré. Détails : $link",
            "$merchant : livré. $link",
            "Votre colis $merchant a été livré",
            "Votre colis $merchant a été livré.",
        ),
        "failed": Texts(
            "$merchant : nous n'avons pas pu livrer votre colis. Choisissez un autre jour ou un point relais : $link",
            "$merchant : non livré. Autre jour ou point relais : $link",
            "Nous n'avons pas pu livrer votre colis $merchant",
            "Nous n'avons pas pu livrer votre colis $merchant aujourd'hui. Choisissez un autre jour ou un point relais.",
        ),
    },
    greeting="Bonjour $name,",
    button="Suivre mon colis",
    failed_button="Choisir un autre jour ou un point relais",
    footer="Vous recevez cet e-mail car vous avez commandé chez $merchant.",
    unsubscribe="Se désabonner de ces e-mails",
    customer="",
    window="entre {start} et {end}",
    around="vers {time}",
    today="aujourd'hui",
    clock=lambda t: t.strftime("%Hh%M"),
    date=lambda t: f"{_FR[0][t.weekday()]} {t.day} {_FR[1][t.month - 1]}",
)

ES = Language(
    code="es",
    kinds={
        "scheduled": Texts(
            "$merchant: su entrega está prevista para el $date $window. Seguimiento: $link",
            "$merchant: entrega el $date $window. $link",
            "Su entrega de $merchant está prevista para el $date",
            "Su entrega de $merchant está prevista para el $date $window.",
        ),
        "out_for_delivery": Texts(
            "$merchant: su paquete está en reparto y llega $arrival. Seguimiento: $link",
            "$merchant: en reparto, llega $arrival. $link",
            "Su paquete de $merchant está en reparto",
            "Su paquete de $merchant está en reparto y llega $arrival.",
        ),
        "eta_changed": Texts(
            "$merchant: nueva hora de llegada, su paquete llega $arrival. Seguimiento: $link",
            "$merchant: llega $arrival. $link",
            "Nueva hora de llegada para su paquete de $merchant",
            "Su paquete de $merchant llega ahora $arrival.",
        ),
        "arriving_soon": Texts(
            "$merchant: su paquete llega pronto, $arrival. Esté atento. $link",
            "$merchant: llega pronto, $arrival. $link",
            "Su paquete de $merchant llega pronto",
            "Su paquete de $merchant llega pronto, $arrival. Esté atento para recibirlo.",
        ),
        "delivered": Texts(
            "$merchant: su paquete ha sido entregado. Detalles: $link",
            "$merchant: entregado. $link",
            "Su paquete de $merchant ha sido entregado",
            "Su paquete de $merchant ha sido entregado.",
        ),
        "failed": Texts(
            "$merchant: no pudimos entregar su paquete hoy. Elija otro día o un punto de recogida: $link",
            "$merchant: no entregado. Otro día o punto de recogida: $link",
            "No pudimos entregar su paquete de $merchant",
            "No pudimos entregar su paquete de $merchant hoy. Elija otro día o un punto de recogida.",
        ),
    },
    greeting="Hola $name,",
    button="Seguir mi paquete",
    failed_button="Elegir otro día o un punto de recogida",
    footer="Recibe este correo porque compró en $merchant.",
    unsubscribe="Darse de baja de estos correos",
    customer="",
    window="entre las {start} y las {end}",
    around="hacia las {time}",
    today="hoy",
    clock=_hm,
    date=lambda t: f"{_ES[0][t.weekday()]} {t.day} {_ES[1][t.month - 1]}",
)

CATALOG: dict[str, Language] = {lang.code: lang for lang in (EN, DE, FR, ES)}
LANGUAGES: tuple[str, ...] = tuple(CATALOG)
