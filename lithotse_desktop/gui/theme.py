"""Light, dark, or follow the system: the app's palette, chosen in Settings and kept per user.

The app always uses Qt's Fusion style with one of two palettes, so every platform looks as the
screenshots do and contrast is checked once: "system" picks the light or dark palette from the
desktop's colour scheme (``QStyleHints.colorScheme``) and follows it when it changes. The
choice is a per-user preference (QSettings, INI format in the user's config folder), not a
workspace setting: people sharing a workspace keep their own.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPainter, QPalette, QPen
from PySide6.QtWidgets import QApplication, QProxyStyle, QStyle, QStyleFactory, QStyleOption, QWidget

THEMES = {"system": "Follow the system", "light": "Light", "dark": "Dark"}
KEY = "appearance/theme"

_following = False


def settings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "Lithotse", "desktop")


def saved_theme() -> str:
    value = str(settings().value(KEY, "system"))
    return value if value in THEMES else "system"


def save_theme(name: str) -> None:
    if name not in THEMES:
        raise ValueError(f"theme {name!r}: one of {', '.join(THEMES)}")
    store = settings()
    store.setValue(KEY, name)
    store.sync()


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    return hints is not None and hints.colorScheme() == Qt.ColorScheme.Dark


def effective(name: str) -> str:
    """"light" or "dark": what ``name`` means on this desktop now."""
    if name == "system":
        return "dark" if system_is_dark() else "light"
    return name


def dark_palette() -> QPalette:
    pal = QPalette()
    colours = {
        QPalette.ColorRole.Window: "#2b2d30", QPalette.ColorRole.WindowText: "#e8e8e8",
        QPalette.ColorRole.Base: "#1e1f22", QPalette.ColorRole.AlternateBase: "#26282b",
        QPalette.ColorRole.ToolTipBase: "#3c3f41", QPalette.ColorRole.ToolTipText: "#f0f0f0",
        QPalette.ColorRole.PlaceholderText: "#8c8f94", QPalette.ColorRole.Text: "#e8e8e8",
        QPalette.ColorRole.Button: "#3a3d41", QPalette.ColorRole.ButtonText: "#e8e8e8",
        QPalette.ColorRole.BrightText: "#ff6b6b", QPalette.ColorRole.Light: "#4a4d52",
        QPalette.ColorRole.Midlight: "#404348", QPalette.ColorRole.Mid: "#33363a",
        QPalette.ColorRole.Dark: "#191a1c", QPalette.ColorRole.Shadow: "#0c0c0d",
        QPalette.ColorRole.Highlight: "#2f65ca", QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#78aef8", QPalette.ColorRole.LinkVisited: "#b48ef0",
    }
    for role, colour in colours.items():
        pal.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7d8085"))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Button, QColor("#303236"))
    return pal


class LookStyle(QProxyStyle):
    """Fusion, with check boxes outlined in a colour that shows on a dark field: Fusion darkens
    the window colour for their frame, which on the dark palette leaves an unticked box (a
    stream to import, an option) all but invisible."""

    CHECKS = (QStyle.PrimitiveElement.PE_IndicatorCheckBox, QStyle.PrimitiveElement.PE_IndicatorItemViewItemCheck)

    def __init__(self) -> None:
        super().__init__("Fusion")

    def drawPrimitive(self, element: QStyle.PrimitiveElement, option: QStyleOption, painter: QPainter,
                      widget: QWidget | None = None) -> None:
        super().drawPrimitive(element, option, painter, widget)
        palette = option.palette
        if element in self.CHECKS and palette.color(QPalette.ColorRole.Base).lightness() < 100:
            painter.save()
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
            painter.setPen(QPen(palette.color(QPalette.ColorRole.Mid).lighter(220), 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            rect = option.rect
            painter.drawRect(rect.adjusted(0, 0, -1, -1))
            painter.restore()


def light_palette() -> QPalette:
    style = QStyleFactory.create("Fusion")
    return style.standardPalette() if style is not None else QPalette()


def apply_theme(name: str, app: QApplication | None = None) -> str:
    """Use theme ``name`` ("system", "light" or "dark") now; returns "light" or "dark"."""
    global _following
    instance = app or QApplication.instance()
    if not isinstance(instance, QApplication):
        raise RuntimeError("no QApplication to theme")
    app = instance
    if not isinstance(app.style(), LookStyle):
        app.setStyle(LookStyle())
    font = app.font()
    if font.kerning():
        # A label's &-key letter is drawn as a run of its own, so kerning pairs across it ("Ta",
        # "Wo") are lost and the text outgrows the width its size hint measured with kerning;
        # without kerning the two agree and no label is cut by a pixel or two.
        font.setKerning(False)
        app.setFont(font)
    mode = effective(name)
    app.setPalette(dark_palette() if mode == "dark" else light_palette())
    hints = QGuiApplication.styleHints()
    if name == "system" and not _following and hints is not None:
        hints.colorSchemeChanged.connect(lambda _scheme: _follow())
        _following = True
    return mode


def _follow() -> None:
    if saved_theme() == "system":
        apply_theme("system")
