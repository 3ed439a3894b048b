"""The check for cut-off text finds what a reader would see clipped, and only that."""

from __future__ import annotations

from PySide6.QtWidgets import QFormLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from lithotse_desktop.gui.layoutcheck import cut_off_texts


def shown(qtbot, *widgets: QWidget) -> QWidget:
    root = QWidget()
    layout = QVBoxLayout(root)
    for widget in widgets:
        layout.addWidget(widget)
    qtbot.addWidget(root)
    root.resize(400, 200)
    root.show()
    qtbot.waitExposed(root)
    return root


def test_a_label_narrower_than_its_text_is_reported_with_both_widths(qtbot):
    label = QLabel("Between 1 Jan 2020 and 31 Dec 2024")
    root = shown(qtbot, label)
    assert cut_off_texts(root) == []
    label.setFixedWidth(60)
    [found] = cut_off_texts(root)
    assert (found.text, found.available) == ("Between 1 Jan 2020 and 31 Dec 2024", 60)
    assert found.needed == label.fontMetrics().horizontalAdvance(label.text())


def test_a_button_too_narrow_for_its_text_is_reported(qtbot):
    button = QPushButton("Export chart…")
    root = shown(qtbot, button)
    assert cut_off_texts(root) == []
    button.setFixedWidth(30)
    assert [c.text for c in cut_off_texts(root)] == ["Export chart…"]


def test_an_access_key_label_is_measured_as_drawn_and_the_app_font_makes_it_fit(qtbot, qapp):
    """Qt draws the &-key letter as a run of its own, without kerning across it; with the kerning
    the app turns off, the size hint and the drawing agree."""
    root = QWidget()
    form = QFormLayout(root)
    label = QLabel("&Table")
    field = QLineEdit()
    label.setBuddy(field)
    form.addRow(label, field)
    font = qapp.font()
    assert not font.kerning(), "the app's look turns kerning off"
    kerned = label.font()
    kerned.setKerning(True)
    label.setFont(kerned)
    qtbot.addWidget(root)
    root.show()
    qtbot.waitExposed(root)
    metrics = label.fontMetrics()
    split = sum(metrics.horizontalAdvance(part) for part in ("T", "able"))
    assert split > metrics.horizontalAdvance("Table") + 1, "the font kerns Ta"
    assert [c.text for c in cut_off_texts(root)] == ["&Table"], "the joined width falls short of the drawing"
    label.setFont(font)
    qtbot.wait(10)
    assert cut_off_texts(root) == []


def test_an_unticked_box_shows_on_the_dark_palette(qtbot, qapp):
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QCheckBox, QStyle, QStyleOptionButton

    from lithotse_desktop.gui.theme import apply_theme

    box = QCheckBox("Full re-import")
    root = shown(qtbot, box)
    contrasts = {}
    for theme in ("light", "dark"):
        apply_theme(theme, qapp)
        qtbot.wait(10)
        option = QStyleOptionButton()
        box.initStyleOption(option)
        frame = box.style().subElementRect(QStyle.SubElement.SE_CheckBoxIndicator, option, box)
        image = root.grab().toImage()
        at = box.mapTo(root, frame.topLeft())
        edge = QColor(image.pixel(at.x(), at.y() + frame.height() // 2)).lightness()
        inside = QColor(image.pixel(at.x() + frame.width() // 2, at.y() + frame.height() // 2)).lightness()
        contrasts[theme] = abs(edge - inside)
    assert min(contrasts.values()) >= 40, contrasts
